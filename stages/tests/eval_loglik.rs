//! Golden test of the eval scorer: on a tiny random model, every `(context, continuation)` scored by
//! `eval::loglik::score` (shared-context single-token groups, batched, left-truncated) equals a
//! straightforward full recompute of that one sequence.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor, D};
use medalign_model::config::Config;
use medalign_model::weights::TensorMapSource;
use medalign_model::{LinearFormat, Model, Weights};
use medalign_stages::eval::loglik::{predictions, score, Request};
use rand::{Rng, SeedableRng};

fn tiny_model() -> Model {
    let cfg: Config = serde_json::from_str(
        r#"{"model_type": "llama", "vocab_size": 64, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 48, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true}"#,
    )
    .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut w = HashMap::new();
    let mut put = |name: String, shape: &[usize], std: f64, offset: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-std..std) as f32 + offset).collect();
        w.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    };
    put("model.embed_tokens.weight".into(), &[64, 64], 0.8, 0.0);
    put("model.norm.weight".into(), &[64], 0.1, 1.0);
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", [64, 64]),
            ("self_attn.k_proj.weight", [32, 64]),
            ("self_attn.v_proj.weight", [32, 64]),
            ("self_attn.o_proj.weight", [64, 64]),
            ("mlp.gate_proj.weight", [96, 64]),
            ("mlp.up_proj.weight", [96, 64]),
            ("mlp.down_proj.weight", [64, 96]),
        ] {
            put(format!("{p}.{name}"), &shape, 0.17, 0.0);
        }
        put(format!("{p}.input_layernorm.weight"), &[64], 0.1, 1.0);
        put(format!("{p}.post_attention_layernorm.weight"), &[64], 0.1, 1.0);
    }
    Model::new(&cfg, Weights::new(Arc::new(TensorMapSource(w)), Device::Cpu, LinearFormat::F32))
        .unwrap()
}

/// The reference: the whole sequence through the model alone, as the harness builds it
/// (`(ctx + cont)[-(max_len + 1):][:-1]`), then the continuation's log-probabilities summed.
fn reference(model: &Model, ctx: &[u32], cont: &[u32]) -> (f64, bool) {
    let max_len = 48;
    let full: Vec<u32> = ctx.iter().chain(cont).copied().collect();
    let window = &full[full.len().saturating_sub(max_len + 1)..full.len() - 1];
    let input = Tensor::new(window, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = model.forward(&input, None, None).unwrap().squeeze(0).unwrap();
    let logp: Vec<Vec<f32>> =
        candle_nn::ops::log_softmax(&logits, D::Minus1).unwrap().to_vec2().unwrap();
    let first = window.len() - cont.len();
    let mut sum = 0.0;
    let mut greedy = true;
    for (k, &t) in cont.iter().enumerate() {
        let row = &logp[first + k];
        sum += row[t as usize] as f64;
        let best =
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b });
        greedy &= best.0 == t as usize;
    }
    (sum, greedy)
}

fn requests() -> Vec<Request> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut seq = |n: usize| (0..n).map(|_| rng.random_range(0..64u32)).collect::<Vec<_>>();
    let mut reqs = Vec::new();
    // Multiple-choice groups: one context, four one-token choices.
    for len in [3, 9, 17, 30, 60] {
        let ctx = seq(len);
        for c in [10, 11, 12, 13] {
            reqs.push((ctx.clone(), vec![c]));
        }
    }
    // Multi-token continuations, one of them sharing a context with a one-token choice.
    let shared = seq(12);
    reqs.push((shared.clone(), vec![4]));
    reqs.push((shared, vec![4, 9, 2]));
    for (c, k) in [(5, 2), (20, 4), (70, 3), (1, 1)] {
        reqs.push((seq(c), seq(k)));
    }
    reqs
}

#[test]
fn scorer_equals_full_recompute() {
    let model = tiny_model();
    let reqs = requests();
    for batch_tokens in [16, 100, 10_000] {
        let got = score(&model, &reqs, batch_tokens).unwrap();
        assert_eq!(got.len(), reqs.len());
        let mut greedy_seen = false;
        for ((ctx, cont), ll) in reqs.iter().zip(&got) {
            let (want, greedy) = reference(&model, ctx, cont);
            assert!(
                (ll.logprob - want).abs() < 1e-4,
                "ctx {} cont {:?}: {} vs {want}",
                ctx.len(),
                cont,
                ll.logprob
            );
            assert_eq!(ll.is_greedy, greedy, "ctx {} cont {:?}", ctx.len(), cont);
            assert_eq!(ll.tokens, cont.len());
            greedy_seen |= greedy;
        }
        assert!(greedy_seen || reqs.len() < 4);
    }
}

#[test]
fn acc_norm_divides_by_characters_and_first_wins_ties() {
    let choices: Vec<String> = ["yes", "no", "maybe"].map(String::from).to_vec();
    // acc: "no" (-2.0); acc_norm: yes -3/3 = -1.0, no -2/2 = -1.0, maybe -4/5 = -0.8.
    assert_eq!(predictions(&[-3.0, -2.0, -4.0], &choices), (1, 2));
    assert_eq!(predictions(&[-1.0, -1.0, -9.0], &choices), (0, 0));
}
