//! GGUF loading on a tiny model written in the tests the way llama.cpp writes Llama checkpoints
//! (q/k rows permuted for interleaved RoPE, GGUF names, SentencePiece vocabulary): the loaded
//! model equals the Hugging Face-layout original and the tokenizer applies the vocabulary's merges.

mod common;

use std::sync::Arc;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::{ids, max_abs_diff, random_weights, tiny_config};
use medalign_model::config::{Architecture, Config};
use medalign_model::weights::{GgufSource, TensorMapSource};
use medalign_model::{LinearFormat, Model, Tokenizer, Weights};

/// llama.cpp's `permute`: rows (heads, 2, hd/2) -> (heads, hd/2, 2).
fn permute(w: &Tensor, heads: usize) -> Tensor {
    let (out, inp) = w.dims2().unwrap();
    w.reshape((heads, 2, out / heads / 2, inp))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((out, inp))
        .unwrap()
}

fn gguf_name(hf: &str) -> String {
    let map = [
        ("model.embed_tokens", "token_embd"),
        ("model.norm", "output_norm"),
        ("input_layernorm", "attn_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_proj", "attn_q"),
        ("self_attn.k_proj", "attn_k"),
        ("self_attn.v_proj", "attn_v"),
        ("self_attn.o_proj", "attn_output"),
        ("mlp.gate_proj", "ffn_gate"),
        ("mlp.up_proj", "ffn_up"),
        ("mlp.down_proj", "ffn_down"),
        ("model.layers.", "blk."),
    ];
    map.iter().fold(hf.to_string(), |s, (a, b)| s.replace(a, b))
}

const VOCAB: [(&str, f32, i32); 13] = [
    ("<unk>", 0.0, 2),
    ("<s>", 0.0, 3),
    ("</s>", 0.0, 3),
    ("\u{2581}", -10.0, 1),
    ("a", -11.0, 1),
    ("b", -12.0, 1),
    ("c", -13.0, 1),
    ("d", -14.0, 1),
    ("\u{2581}abcd", -1.0, 1),
    ("\u{2581}ab", -2.0, 1),
    ("ab", -3.0, 1),
    ("cd", -4.0, 1),
    ("\u{2581}a", -5.0, 1),
];

fn write_gguf(cfg: &Config, path: &std::path::Path) {
    let weights = random_weights(cfg, 7);
    let mut tensors = vec![];
    for (name, t) in &weights {
        let t = if name.contains("q_proj") {
            permute(t, cfg.num_attention_heads)
        } else if name.contains("k_proj") {
            permute(t, cfg.kv_heads())
        } else {
            t.clone()
        };
        tensors.push((gguf_name(name), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let mut tokens: Vec<Value> = VOCAB.iter().map(|v| Value::String(v.0.into())).collect();
    let mut scores: Vec<Value> = VOCAB.iter().map(|v| Value::F32(v.1)).collect();
    let mut types: Vec<Value> = VOCAB.iter().map(|v| Value::I32(v.2)).collect();
    for i in VOCAB.len()..cfg.vocab_size {
        tokens.push(Value::String(format!("x{i}")));
        scores.push(Value::F32(-100.0));
        types.push(Value::I32(1));
    }
    let u = |v: usize| Value::U32(v as u32);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", u(cfg.num_hidden_layers)),
        ("llama.context_length", u(cfg.max_position_embeddings)),
        ("llama.embedding_length", u(cfg.hidden_size)),
        ("llama.feed_forward_length", u(cfg.intermediate_size)),
        ("llama.attention.head_count", u(cfg.num_attention_heads)),
        ("llama.attention.head_count_kv", u(cfg.kv_heads())),
        ("llama.rope.freq_base", Value::F32(cfg.rope_theta as f32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(cfg.rms_norm_eps as f32)),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        ("tokenizer.ggml.scores", Value::Array(scores)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.bos_token_id", u(1)),
        ("tokenizer.ggml.eos_token_id", u(2)),
        ("tokenizer.ggml.unknown_token_id", u(0)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

#[test]
fn llama_gguf_loads_equal_to_the_hugging_face_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let cfg = tiny_config(Architecture::Llama);
    write_gguf(&cfg, &path);

    let src = GgufSource::open(&path).unwrap();
    let gcfg = Config::from_gguf(src.content()).unwrap();
    assert_eq!((gcfg.num_hidden_layers, gcfg.kv_heads(), gcfg.head_dim()), (2, 2, 16));
    assert!(gcfg.tie_word_embeddings);
    let from_gguf =
        Model::new(&gcfg, Weights::new(Arc::new(src), Device::Cpu, LinearFormat::F32)).unwrap();
    let hf = Model::new(
        &cfg,
        Weights::new(
            Arc::new(TensorMapSource(random_weights(&cfg, 7))),
            Device::Cpu,
            LinearFormat::F32,
        ),
    )
    .unwrap();
    let prompt = ids(&[1, 5, 9, 33, 2, 17, 60, 4]);
    let d = max_abs_diff(
        &hf.forward(&prompt, None, None).unwrap(),
        &from_gguf.forward(&prompt, None, None).unwrap(),
    );
    assert!(d < 1e-5, "GGUF model differs from the original by {d}");
}

#[test]
fn sentencepiece_vocabulary_from_gguf_merges_by_score() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_gguf(&tiny_config(Architecture::Llama), &path);
    let src = GgufSource::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(src.content()).unwrap();
    // Metaspace prepends "▁"; merges rebuilt from scores join "▁ab" + "cd" last.
    assert_eq!(tok.encode("abcd ab", false).unwrap(), [8, 9]);
    assert_eq!(tok.encode("abcd", true).unwrap(), [1, 8], "llama vocabularies prepend BOS");
    assert_eq!(tok.decode(&[8, 9], true).unwrap(), "abcd ab");
}
