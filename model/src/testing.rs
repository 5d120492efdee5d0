//! Tiny random models written to disk for tests across the workspace: a Llama as a Hugging Face
//! safetensors directory (config.json, model.safetensors, a character-level byte-level-BPE
//! tokenizer.json with ChatML tokens). Loads like any checkpoint, runs in milliseconds.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::Result;

/// Context length of the tiny model.
pub const CONTEXT: usize = 128;

const CHARS: &str = "abcdefghijklmnopqrstuvwxyzĠĊ0123456789.,?!:'()-ABCDEFGHIJKLMNO";

fn tokenizer_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<|im_start|>".into(), 0.into());
    vocab.insert("<|im_end|>".into(), 1.into());
    for (i, c) in CHARS.chars().enumerate() {
        vocab.insert(c.to_string(), (i + 2).into());
    }
    assert_eq!(vocab.len(), 64);
    byte_level_tokenizer_json(vocab, &[(0, "<|im_start|>"), (1, "<|im_end|>")])
}

/// A byte-level BPE `tokenizer.json` without merges: `vocab` maps tokens (in byte-level's
/// alphabet, `Ġ` for a space) to ids, and `special` names the special tokens among them.
pub fn byte_level_tokenizer_json(
    vocab: serde_json::Map<String, serde_json::Value>,
    special: &[(u32, &str)],
) -> serde_json::Value {
    let added: Vec<serde_json::Value> = special
        .iter()
        .map(|&(id, content)| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                               "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    })
}

/// Uniform values in (-bound, bound) from a fixed LCG.
fn random(n: usize, bound: f32, state: &mut u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound
        })
        .collect()
}

/// Writes the tiny model into `dir` (which must exist).
pub fn write_tiny_model(dir: &Path) -> Result<()> {
    let (h, i, layers, heads, kv, vocab) = (64usize, 96usize, 2usize, 4usize, 2usize, 64usize);
    let hd = h / heads;
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": vocab, "hidden_size": h, "intermediate_size": i,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "max_position_embeddings": CONTEXT, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": false, "eos_token_id": 1, "bos_token_id": 0
    });
    write(dir, "config.json", &config.to_string())?;
    write(dir, "tokenizer.json", &tokenizer_json().to_string())?;
    write(dir, "tokenizer_config.json", r#"{"eos_token": "<|im_end|>"}"#)?;
    let mut state = 7u64;
    let mut w = HashMap::new();
    let mut put = |name: String, shape: Vec<usize>, bound: f32, offset: f32| {
        let n = shape.iter().product();
        let v: Vec<f32> = random(n, bound, &mut state).into_iter().map(|x| x + offset).collect();
        w.insert(name, Tensor::from_vec(v, shape, &Device::Cpu).expect("shape matches data"));
    };
    put("model.embed_tokens.weight".into(), vec![vocab, h], 0.8, 0.0);
    put("model.norm.weight".into(), vec![h], 0.1, 1.0);
    put("lm_head.weight".into(), vec![vocab, h], 0.3, 0.0);
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", vec![heads * hd, h]),
            ("self_attn.k_proj.weight", vec![kv * hd, h]),
            ("self_attn.v_proj.weight", vec![kv * hd, h]),
            ("self_attn.o_proj.weight", vec![h, heads * hd]),
            ("mlp.gate_proj.weight", vec![i, h]),
            ("mlp.up_proj.weight", vec![i, h]),
            ("mlp.down_proj.weight", vec![h, i]),
        ] {
            put(format!("{p}.{name}"), shape, 0.17, 0.0);
        }
        put(format!("{p}.input_layernorm.weight"), vec![h], 0.1, 1.0);
        put(format!("{p}.post_attention_layernorm.weight"), vec![h], 0.1, 1.0);
    }
    candle_core::safetensors::save(&w, dir.join("model.safetensors"))?;
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| crate::Error::io(path, e))
}
