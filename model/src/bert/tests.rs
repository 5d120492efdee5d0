//! Tests of the encoder on a tiny random BERT with a word-level vocabulary built here, and, when
//! all-MiniLM-L6-v2 is cached, the dump that `model/scripts/check_minilm.py` compares with
//! sentence-transformers.

use std::collections::HashMap;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;

use super::*;
use crate::fetch::KnownEncoder;

const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "patient", "has", "chest", "pain", "fever", "and",
    "cough", "a", "rash",
];

fn tiny_config() -> BertConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": WORDS.len(), "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 32, "hidden_act": "gelu", "max_position_embeddings": 32, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "pad_token_id": 0
    }))
    .unwrap()
}

fn tiny_tokenizer() -> tokenizers::Tokenizer {
    let vocab: HashMap<String, u32> =
        WORDS.iter().enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("[UNK]".into())
        .build()
        .unwrap();
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let post = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .unwrap()
        .special_tokens(vec![("[CLS]", 2), ("[SEP]", 3)])
        .build()
        .unwrap();
    tok.with_post_processor(Some(post));
    tok
}

/// A random encoder; the VarMap's default init gives random linear and embedding weights.
fn tiny_encoder() -> SentenceEncoder {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = BertModel::new(&tiny_config(), vb).unwrap();
    SentenceEncoder::from_parts(model, tiny_tokenizer(), 16).unwrap()
}

#[test]
fn bert_tiny_shapes_and_unit_norm() {
    let enc = tiny_encoder();
    let texts = ["the patient has chest pain", "fever and cough", "a rash"];
    let out = enc.encode(&texts, 2).unwrap();
    assert_eq!(out.len(), 3);
    for e in &out {
        assert_eq!(e.len(), 16);
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    assert_ne!(out[0], out[1]);
    assert!(enc.encode(&[], 4).unwrap().is_empty());
}

#[test]
fn bert_padding_does_not_change_an_embedding() {
    let enc = tiny_encoder();
    let short = "fever and cough";
    let alone = enc.encode(&[short], 8).unwrap().remove(0);
    let long = "the patient has chest pain and fever and cough and a rash and the chest pain";
    let batched = enc.encode(&[long, short, "a rash"], 8).unwrap();
    let cos: f32 = alone.iter().zip(&batched[1]).map(|(a, b)| a * b).sum();
    assert!(cos > 0.99999, "cosine {cos}");
    let max_diff = alone.iter().zip(&batched[1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(max_diff < 1e-5, "max difference {max_diff}");
}

#[test]
fn bert_truncates_to_max_seq_len() {
    let enc = tiny_encoder();
    let long = vec!["fever"; 100].join(" ");
    let out = enc.encode(&[long.as_str()], 1).unwrap();
    assert_eq!(out[0].len(), 16);
}

#[test]
fn bert_config_rejects_what_is_not_implemented() {
    let mut cfg = tiny_config();
    cfg.position_embedding_type = "relative_key".into();
    assert!(cfg.validate().unwrap_err().to_string().contains("relative_key"));
    let mut cfg = tiny_config();
    cfg.num_attention_heads = 5;
    assert!(cfg.validate().unwrap_err().to_string().contains("multiple"));
}

#[test]
fn bert_pooling_ignores_padding() {
    let dev = Device::Cpu;
    let hidden = candle_core::Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &dev).unwrap();
    let mask = candle_core::Tensor::new(&[[1u32, 1, 0]], &dev).unwrap();
    let pooled = mean_pool(&hidden, &mask).unwrap();
    assert_eq!(pooled.to_vec2::<f32>().unwrap(), vec![vec![2., 3.]]);
    let unit = l2_normalize(&pooled).unwrap().to_vec2::<f32>().unwrap();
    assert!((unit[0][0] - 2. / 13f32.sqrt()).abs() < 1e-6);
}

/// With `MEDALIGN_MINILM_DUMP=in.txt:out.json` and the model cached, embeds each line of `in.txt` and
/// writes `{"embeddings": [...], "seconds": s}`; `model/scripts/check_minilm.py` drives this.
#[test]
fn bert_minilm_dump() {
    let Some(spec) = std::env::var_os("MEDALIGN_MINILM_DUMP") else {
        eprintln!("skipped: set MEDALIGN_MINILM_DUMP=in.txt:out.json (model/scripts/check_minilm.py does)");
        return;
    };
    let spec = spec.to_string_lossy().to_string();
    let (input, output) = spec.split_once(':').expect("MEDALIGN_MINILM_DUMP=in.txt:out.json");
    let known = KnownEncoder::by_name("all-minilm-l6-v2").unwrap();
    let enc = SentenceEncoder::load(&known.ensure().unwrap()).unwrap();
    let text = std::fs::read_to_string(input).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let batch: usize =
        std::env::var("MEDALIGN_MINILM_BATCH").ok().and_then(|b| b.parse().ok()).unwrap_or(32);
    let _warm = enc.encode(&lines[..lines.len().min(4)], batch).unwrap();
    let t = std::time::Instant::now();
    let emb = enc.encode(&lines, batch).unwrap();
    let seconds = t.elapsed().as_secs_f64();
    let doc = serde_json::json!({ "embeddings": emb, "seconds": seconds });
    std::fs::write(output, doc.to_string()).unwrap();
    eprintln!(
        "{} sentences in {seconds:.3} s: {:.1} sentences/s",
        lines.len(),
        lines.len() as f64 / seconds
    );
}
