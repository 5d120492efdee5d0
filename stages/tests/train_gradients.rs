//! Gradients of the SFT loss with respect to LoRA's A and B match central finite differences, over
//! an f32 base and through an NF4 base; packed examples score as they do alone.

mod train_tiny;

use candle_core::{Device, Tensor, Var};
use medalign_model::{LoraAdapter, LoraConfig, Model};
use medalign_stages::train::batch::{token_logprobs, Batch};
use medalign_stages::train::data::{pack, Row, SplitMix64};

fn loss(model: &Model, batch: &Batch) -> f64 {
    token_logprobs(model, batch)
        .unwrap()
        .sum_all()
        .unwrap()
        .neg()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64
}

fn randomize_b(adapter: &LoraAdapter) {
    let mut rng = SplitMix64(99);
    for (name, var) in adapter.named_vars() {
        if name.contains("lora_B") {
            let v: Vec<f32> =
                (0..var.elem_count()).map(|_| (rng.below(2001) as f32 - 1000.0) * 1e-4).collect();
            var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
        }
    }
}

fn check_gradients(mut model: Model) {
    let adapter = LoraAdapter::init(
        &mut model,
        LoraConfig { r: 4, lora_alpha: 8.0, ..LoraConfig::default() },
        3,
    )
    .unwrap();
    randomize_b(&adapter);
    let seqs = train_tiny::pattern_sequences(3, 12, 1);
    let refs: Vec<_> = seqs.iter().collect();
    let batch = Batch::new(&pack(&refs, 24, true), 0, &Device::Cpu).unwrap();
    let l = token_logprobs(&model, &batch).unwrap().sum_all().unwrap().neg().unwrap();
    let grads = l.backward().unwrap();
    let vars = adapter.named_vars();
    let with_grad = vars
        .iter()
        .filter(|(_, v)| {
            grads.get(v.as_tensor()).is_some_and(|g| {
                g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0
            })
        })
        .count();
    assert_eq!(with_grad, vars.len(), "every LoRA variable gets a gradient");
    let mut rng = SplitMix64(4);
    for (name, var) in vars.iter().step_by(5) {
        let g: Vec<f32> =
            grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for _ in 0..2 {
            let i = rng.below(base.len());
            let eps = 1e-2f32;
            let at = |delta: f32| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
                loss(&model, &batch)
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            set(var, &base);
            let an = g[i] as f64;
            assert!(
                (fd - an).abs() <= 2e-2 * an.abs().max(fd.abs()) + 2e-3,
                "{name}[{i}]: analytic {an}, finite difference {fd}"
            );
        }
    }
}

fn set(var: &Var, v: &[f32]) {
    var.set(&Tensor::from_vec(v.to_vec(), var.dims(), &Device::Cpu).unwrap()).unwrap();
}

#[test]
fn lora_gradients_match_finite_differences_over_an_f32_base() {
    check_gradients(train_tiny::model(11));
}

#[test]
fn lora_gradients_match_finite_differences_through_an_nf4_base() {
    check_gradients(train_tiny::nf4_model(11));
}

#[test]
fn packed_examples_do_not_see_each_other() {
    let model = train_tiny::model(12);
    let seqs = train_tiny::pattern_sequences(2, 10, 2);
    let alone: Vec<f32> = seqs
        .iter()
        .flat_map(|s| {
            let mut r = Row::default();
            r.push(s);
            token_logprobs(&model, &Batch::new(&[r], 0, &Device::Cpu).unwrap())
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        })
        .collect();
    let refs: Vec<_> = seqs.iter().collect();
    let rows = pack(&refs, 20, true);
    assert_eq!(rows.len(), 1);
    let packed: Vec<f32> = token_logprobs(&model, &Batch::new(&rows, 0, &Device::Cpu).unwrap())
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(alone.len(), packed.len());
    for (a, p) in alone.iter().zip(&packed) {
        assert!((a - p).abs() < 1e-4, "alone {a} packed {p}");
    }
}
