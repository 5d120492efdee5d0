//! Tiny random models built in the tests: config -> random weights -> model.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use medalign_model::config::{Architecture, Config};
use medalign_model::weights::TensorMapSource;
use medalign_model::{LinearFormat, Model, Weights};

/// A 2-layer GQA model (4 query heads, 2 kv heads, head dim 16).
pub fn tiny_config(arch: Architecture) -> Config {
    let text = format!(
        r#"{{"model_type": "{}", "vocab_size": 64, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": {}, "sliding_window": {}}}"#,
        match arch {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        },
        arch == Architecture::Llama,
        if arch == Architecture::Mistral { "3" } else { "null" },
    );
    serde_json::from_str(&text).unwrap()
}

/// Random weights with Hugging Face names for `cfg` (q/k/v biases for Qwen2).
pub fn random_weights(cfg: &Config, seed: u64) -> HashMap<String, Tensor> {
    use rand::{Rng, SeedableRng};
    let dev = Device::Cpu;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.kv_heads() * hd);
    let mut w = HashMap::new();
    let mut put = |name: String, shape: &[usize], std: f64| {
        let n: usize = shape.iter().product();
        let bound = std * 3f64.sqrt();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect();
        let t = Tensor::from_vec(v, shape, &dev).unwrap();
        w.insert(name, t);
    };
    put("model.embed_tokens.weight".into(), &[cfg.vocab_size, h], 0.5);
    put("model.norm.weight".into(), &[h], 0.1);
    if !cfg.tie_word_embeddings {
        put("lm_head.weight".into(), &[cfg.vocab_size, h], 0.1);
    }
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![q, h]),
            ("self_attn.k_proj.weight", vec![kv, h]),
            ("self_attn.v_proj.weight", vec![kv, h]),
            ("self_attn.o_proj.weight", vec![h, q]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
            ("input_layernorm.weight", vec![h]),
            ("post_attention_layernorm.weight", vec![h]),
        ] {
            put(format!("{p}.{name}"), &shape, 0.1);
        }
        if cfg.architecture == Architecture::Qwen2 {
            put(format!("{p}.self_attn.q_proj.bias"), &[q], 0.1);
            put(format!("{p}.self_attn.k_proj.bias"), &[kv], 0.1);
            put(format!("{p}.self_attn.v_proj.bias"), &[kv], 0.1);
        }
    }
    // Norm gains near 1.
    for (k, t) in w.iter_mut() {
        if k.ends_with("norm.weight") {
            *t = (t.clone() + 1.0).unwrap();
        }
    }
    w
}

/// A random model of `arch` held in `format`.
pub fn tiny_model(arch: Architecture, format: LinearFormat) -> Model {
    let cfg = tiny_config(arch);
    let src = Arc::new(TensorMapSource(random_weights(&cfg, 7)));
    Model::new(&cfg, Weights::new(src, Device::Cpu, format)).unwrap()
}

/// Largest absolute difference between two tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Token ids as a `(1, n)` tensor.
pub fn ids(v: &[u32]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap().unsqueeze(0).unwrap()
}
