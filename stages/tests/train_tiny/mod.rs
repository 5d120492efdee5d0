//! A tiny random Llama for the train and quantize tests: 2 layers, hidden 64, vocab 64.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use medalign_model::config::Config;
use medalign_model::quant::{QuantFormat, QuantizedModel};
use medalign_model::weights::TensorMapSource;
use medalign_model::{LinearFormat, Model, Weights};
use medalign_stages::precision::Precision;
use medalign_stages::train::data::{Sequence, SplitMix64};
use medalign_stages::train::optimizer::Schedule;
use medalign_stages::train::TrainConfig;
use rand::{Rng, SeedableRng};

/// The config.
pub fn config() -> Config {
    serde_json::from_str(
        r#"{"model_type": "llama", "vocab_size": 64, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": true}"#,
    )
    .unwrap()
}

/// Random weights with Hugging Face names.
pub fn weights(seed: u64) -> HashMap<String, Tensor> {
    let cfg = config();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut w = HashMap::new();
    for name in medalign_model::quant::tensor_names(&cfg) {
        let shape: Vec<usize> = if name.contains("embed_tokens") {
            vec![64, 64]
        } else if name.ends_with("norm.weight") {
            vec![64]
        } else if name.contains("k_proj") || name.contains("v_proj") {
            vec![32, 64]
        } else if name.contains("gate_proj") || name.contains("up_proj") {
            vec![96, 64]
        } else if name.contains("down_proj") {
            vec![64, 96]
        } else if name.contains("_proj") {
            vec![64, 64]
        } else {
            continue;
        };
        let n: usize = shape.iter().product();
        let norm = name.ends_with("norm.weight");
        let v: Vec<f32> =
            (0..n)
                .map(|_| {
                    if norm {
                        1.0 + rng.random_range(-0.1..0.1)
                    } else {
                        rng.random_range(-0.2..0.2)
                    }
                })
                .collect();
        w.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).unwrap());
    }
    w
}

/// The model over f32 weights.
pub fn model(seed: u64) -> Model {
    let src = Arc::new(TensorMapSource(weights(seed)));
    Model::new(&config(), Weights::new(src, Device::Cpu, LinearFormat::F32)).unwrap()
}

/// The model over an NF4 base (blocks of 32, double quantization).
pub fn nf4_model(seed: u64) -> Model {
    let src = TensorMapSource(weights(seed));
    let (q, _) = QuantizedModel::quantize(
        &src,
        &config(),
        QuantFormat::Nf4 { block_size: 32, double_quant: true },
    )
    .unwrap();
    Model::new(&config(), Weights::new(Arc::new(q), Device::Cpu, LinearFormat::Quantized)).unwrap()
}

/// Sequences following `next = (3 * cur + 1) % 64`, with loss on the second half.
pub fn pattern_sequences(n: usize, len: usize, seed: u64) -> Vec<Sequence> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            let mut ids = vec![rng.below(64) as u32];
            while ids.len() < len {
                ids.push((3 * ids[ids.len() - 1] + 1) % 64);
            }
            Sequence { ids, mask: (0..len).map(|i| i >= len / 2).collect() }
        })
        .collect()
}

/// Train params for a few quick steps.
pub fn params() -> TrainConfig {
    TrainConfig {
        lr: 1e-2,
        schedule: Schedule::Cosine,
        warmup_steps: Some(1),
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        batch_size: 2,
        grad_accum: 2,
        max_seq_len: 32,
        packing: true,
        checkpoint_every: 2,
        eval_every: 0,
        seed: 5,
        precision: Precision::F32,
        ..TrainConfig::default()
    }
}
