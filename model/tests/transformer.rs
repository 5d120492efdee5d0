//! The decoder on tiny random models: shapes, KV cache, padding, sliding window, gradients.

mod common;

use candle_core::{Device, Tensor, D};
use common::{ids, max_abs_diff, tiny_model};
use medalign_model::config::Architecture;
use medalign_model::{KvCache, LinearFormat, LoraAdapter, LoraConfig};

const ARCHS: [Architecture; 3] = [Architecture::Llama, Architecture::Mistral, Architecture::Qwen2];
const PROMPT: [u32; 10] = [1, 5, 9, 33, 2, 17, 60, 4, 8, 12];

#[test]
fn forward_gives_logits_for_every_position() {
    for arch in ARCHS {
        let m = tiny_model(arch, LinearFormat::F32);
        let x = Tensor::new(&[[1u32, 2, 3], [4, 5, 6]], &Device::Cpu).unwrap();
        assert_eq!(m.forward(&x, None, None).unwrap().dims(), &[2, 3, 64]);
        assert_eq!(m.forward_last(&x, None, None).unwrap().dims(), &[2, 64]);
    }
}

#[test]
fn kv_cache_decode_equals_full_recompute() {
    for arch in ARCHS {
        let m = tiny_model(arch, LinearFormat::F32);
        let full = m.forward(&ids(&PROMPT), None, None).unwrap().squeeze(0).unwrap();
        let mut cache = KvCache::new(m.config());
        let mut rows = vec![m
            .forward(&ids(&PROMPT[..4]), Some(&mut cache), None)
            .unwrap()
            .squeeze(0)
            .unwrap()];
        for &t in &PROMPT[4..] {
            rows.push(m.forward(&ids(&[t]), Some(&mut cache), None).unwrap().squeeze(0).unwrap());
        }
        let inc = Tensor::cat(&rows, 0).unwrap();
        assert_eq!(cache.len(), PROMPT.len());
        let d = max_abs_diff(&full, &inc);
        assert!(d < 1e-4, "{arch:?}: cached decode differs by {d}");
    }
}

#[test]
fn left_padding_does_not_change_logits() {
    let m = tiny_model(Architecture::Llama, LinearFormat::F32);
    let alone = m.forward_last(&ids(&PROMPT[..5]), None, None).unwrap();
    let batch =
        Tensor::new(&[[0u32, 0, 0, 1, 5, 9, 33, 2], [7, 7, 1, 5, 9, 33, 2, 3]], &Device::Cpu)
            .unwrap();
    let both = m.forward_last(&batch, None, Some(&[3, 0])).unwrap();
    let d = max_abs_diff(&alone.squeeze(0).unwrap(), &both.get(0).unwrap());
    assert!(d < 1e-4, "padding changed logits by {d}");
}

#[test]
fn sliding_window_limits_attention() {
    // With window 3 over 2 layers a position sees 4 back: position 9 does not see token 0.
    let m = tiny_model(Architecture::Mistral, LinearFormat::F32);
    let mut other = PROMPT;
    other[0] = 40;
    let a = m.forward_last(&ids(&PROMPT), None, None).unwrap();
    let b = m.forward_last(&ids(&other), None, None).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-6);
    let m = tiny_model(Architecture::Llama, LinearFormat::F32);
    let a = m.forward_last(&ids(&PROMPT), None, None).unwrap();
    let b = m.forward_last(&ids(&other), None, None).unwrap();
    assert!(max_abs_diff(&a, &b) > 1e-4);
}

#[test]
fn quantized_format_stays_close_to_f32() {
    let f = tiny_model(Architecture::Llama, LinearFormat::F32);
    let q = tiny_model(Architecture::Llama, LinearFormat::Quantized);
    let a =
        candle_nn::ops::softmax(&f.forward(&ids(&PROMPT), None, None).unwrap(), D::Minus1).unwrap();
    let b =
        candle_nn::ops::softmax(&q.forward(&ids(&PROMPT), None, None).unwrap(), D::Minus1).unwrap();
    let d = max_abs_diff(&a, &b);
    assert!(d < 2e-2, "Q8_0 probabilities differ by {d}");
}

#[test]
fn every_lora_variable_gets_a_gradient() {
    for format in [LinearFormat::F32, LinearFormat::Quantized] {
        let mut m = tiny_model(Architecture::Qwen2, format);
        let adapter =
            LoraAdapter::init(&mut m, LoraConfig { r: 4, ..LoraConfig::default() }, 1).unwrap();
        // B starts at zero, so perturb it for A's gradient to be non-zero too.
        for v in adapter.vars() {
            v.set(&(v.as_tensor() + 0.01).unwrap()).unwrap();
        }
        let logits = m.forward(&ids(&PROMPT), None, None).unwrap();
        let loss = candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let vars = adapter.named_vars();
        assert_eq!(vars.len(), 2 * 7 * 2);
        for (name, v) in vars {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{format:?}: no gradient for {name}"));
            let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(n > 0.0, "{format:?}: zero gradient for {name}");
        }
    }
}

#[test]
fn losses_train_lora_and_dpo_prefers_the_chosen() {
    use medalign_model::{causal_lm_loss, dpo_loss, sequence_logprobs};
    let mut m = tiny_model(Architecture::Llama, LinearFormat::F32);
    let adapter =
        LoraAdapter::init(&mut m, LoraConfig { r: 4, ..LoraConfig::default() }, 3).unwrap();
    let mut opt = candle_nn::AdamW::new_lr(adapter.vars(), 1e-2).unwrap();
    let x = ids(&PROMPT);
    let mask = Tensor::ones((1, PROMPT.len()), candle_core::DType::F32, &Device::Cpu).unwrap();
    let first = causal_lm_loss(&m, &x, &mask).unwrap().to_scalar::<f32>().unwrap();
    for _ in 0..10 {
        let loss = causal_lm_loss(&m, &x, &mask).unwrap();
        candle_nn::Optimizer::backward_step(&mut opt, &loss).unwrap();
    }
    let last = causal_lm_loss(&m, &x, &mask).unwrap().to_scalar::<f32>().unwrap();
    assert!(last < first, "SFT loss did not fall: {first} -> {last}");
    let lp = sequence_logprobs(&m, &x, &mask).unwrap();
    let zero = Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
    let good = dpo_loss(&lp, &zero, &zero, &zero, 0.1).unwrap().to_scalar::<f32>().unwrap();
    let ln2 = dpo_loss(&zero, &zero, &zero, &zero, 0.1).unwrap().to_scalar::<f32>().unwrap();
    assert!((ln2 - std::f32::consts::LN_2).abs() < 1e-6);
    assert!(good > ln2, "a chosen answer less likely than the rejected one costs more");
}
