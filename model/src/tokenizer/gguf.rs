//! Rebuilds a Hugging Face `tokenizer.json` document from GGUF metadata, the way `transformers`
//! and llama.cpp read the same keys (`tokenizer.ggml.model`, `.pre`, `.tokens`, `.merges`,
//! `.scores`, `.token_type`).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::{json, Value as Json};

use crate::{Error, Result};

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GGUF token types (llama.cpp's `llama_token_type`).
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

fn strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>> {
    let v =
        md.get(key).and_then(|v| v.to_vec().ok()).ok_or_else(|| Error::GgufMetadata(key.into()))?;
    v.iter().map(|x| x.to_string().cloned().map_err(|_| Error::GgufMetadata(key.into()))).collect()
}

/// The numbers of array `key`, or `None` where it is missing or holds anything else. Read by
/// matching the values: trying `to_f32` first made an error, with a backtrace where
/// `RUST_BACKTRACE` is set, for each of the 49152 integer token types of SmolLM2 (model loading
/// took 0.5-0.9 s instead of 0.1).
fn numbers(md: &HashMap<String, Value>, key: &str) -> Option<Vec<f64>> {
    let Value::Array(v) = md.get(key)? else { return None };
    v.iter()
        .map(|x| match *x {
            Value::F32(x) => Some(x.into()),
            Value::F64(x) => Some(x),
            Value::I8(x) => Some(x.into()),
            Value::U8(x) => Some(x.into()),
            Value::I16(x) => Some(x.into()),
            Value::U16(x) => Some(x.into()),
            Value::I32(x) => Some(x.into()),
            Value::U32(x) => Some(x.into()),
            Value::I64(x) => Some(x as f64),
            Value::U64(x) => Some(x as f64),
            _ => None,
        })
        .collect()
}

/// GPT-2's printable spelling of every byte.
fn byte_alphabet() -> Vec<char> {
    let mut bs: Vec<u32> =
        (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.into_iter().zip(cs) {
        table[b as usize] = char::from_u32(c).expect("valid code point");
    }
    table
}

/// The `tokenizer.json` document a GGUF file describes, plus whether BOS is prepended.
pub fn tokenizer_json_from_gguf(content: &Content) -> Result<(Json, bool)> {
    let md = &content.metadata;
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    let pre =
        md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let mut tokens = strings(md, "tokenizer.ggml.tokens")?;
    let types: Vec<i32> = numbers(md, "tokenizer.ggml.token_type")
        .map(|v| v.into_iter().map(|x| x as i32).collect())
        .unwrap_or_default();
    let flag = |k: &str| md.get(k).and_then(|v| v.to_bool().ok());
    let byte_level = model == "gpt2";
    if byte_level {
        let alphabet = byte_alphabet();
        for t in tokens.iter_mut() {
            if !t.chars().all(|c| alphabet.contains(&c)) {
                *t = t.bytes().map(|b| alphabet[b as usize]).collect();
            }
        }
    }
    let vocab: serde_json::Map<String, Json> =
        tokens.iter().enumerate().map(|(i, t)| (t.clone(), json!(i))).collect();
    let added: Vec<Json> = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(types.get(*i), Some(&CONTROL) | Some(&USER_DEFINED)))
        .map(|(i, t)| {
            json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": types[i] == CONTROL})
        })
        .collect();
    let (doc, default_bos) = match model.as_str() {
        "gpt2" => {
            let merges = strings(md, "tokenizer.ggml.merges")?;
            let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
            let pre_tokenizer = match pre.as_str() {
                // llama.cpp: digits one by one, then GPT-2's regex.
                "smollm" | "starcoder" | "refact" | "codeshell" => {
                    json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level]})
                }
                "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" | "dbrx" => {
                    split_then_bytes(LLAMA3_SPLIT)
                }
                "qwen2" | "deepseek-r1-qwen" => split_then_bytes(QWEN2_SPLIT),
                _ => byte_level,
            };
            let doc = json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
                "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                          "ignore_merges": pre.starts_with("llama"), "vocab": vocab, "merges": merges},
            });
            (doc, false)
        }
        "llama" => {
            let scores = numbers(md, "tokenizer.ggml.scores")
                .ok_or_else(|| Error::GgufMetadata("tokenizer.ggml.scores".into()))?;
            let merges: Json = match strings(md, "tokenizer.ggml.merges") {
                Ok(m) => json!(m),
                Err(_) => json!(merges_from_scores(&tokens, &scores)),
            };
            let unk = md
                .get("tokenizer.ggml.unknown_token_id")
                .and_then(|v| v.to_u32().ok())
                .map(|i| tokens[i as usize].clone());
            let doc = json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": "first", "split": false},
                "post_processor": null,
                "decoder": {"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
                    {"type": "ByteFallback"}, {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
                "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                          "ignore_merges": false, "vocab": vocab, "merges": merges},
            });
            (doc, true)
        }
        other => return Err(Error::Unsupported(format!("GGUF tokenizer model `{other}`"))),
    };
    let add_bos = flag("tokenizer.ggml.add_bos_token").unwrap_or(default_bos);
    Ok((doc, add_bos))
}

fn split_then_bytes(regex: &str) -> Json {
    json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})
}

/// SentencePiece vocabularies list no merges: every split of a token into two known pieces is a
/// merge, ranked by the merged token's score (as `transformers.generate_merges` does).
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Vec<[String; 2]> {
    let index: HashMap<&str, usize> =
        tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize, usize, &str, &str)> = vec![];
    for (t, &score) in tokens.iter().zip(scores) {
        let mut local = vec![];
        for (cut, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(cut);
            if let (Some(&li), Some(&ri)) = (index.get(l), index.get(r)) {
                local.push((score, l.chars().count(), r.chars().count(), li, ri, l, r));
            }
        }
        local.sort_by_key(|m| (m.3, m.4));
        merges.extend(local);
    }
    // Stable sort, best score first, then shorter left and right pieces last (reverse order).
    merges.sort_by(|a, b| {
        (b.0, b.1, b.2).partial_cmp(&(a.0, a.1, a.2)).unwrap_or(std::cmp::Ordering::Equal)
    });
    merges.into_iter().map(|m| [m.5.to_string(), m.6.to_string()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_integer_and_float_arrays_and_nothing_else() {
        let md: HashMap<String, Value> = [
            ("types", Value::Array(vec![Value::I32(1), Value::I32(3), Value::U8(4)])),
            ("scores", Value::Array(vec![Value::F32(-1.5), Value::F64(0.25)])),
            ("mixed", Value::Array(vec![Value::F32(1.0), Value::String("a".into())])),
            ("scalar", Value::F32(2.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(numbers(&md, "types"), Some(vec![1.0, 3.0, 4.0]));
        assert_eq!(numbers(&md, "scores"), Some(vec![-1.5, 0.25]));
        assert_eq!(numbers(&md, "mixed"), None);
        assert_eq!(numbers(&md, "scalar"), None);
        assert_eq!(numbers(&md, "missing"), None);
    }
}
