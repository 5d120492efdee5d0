//! [`SentenceEncoder`]: text in, unit-length sentence embeddings out, as sentence-transformers'
//! `SentenceTransformer.encode(..., normalize_embeddings=True)` computes them for a BERT model with mean
//! pooling and a `Normalize` module (all-MiniLM-L6-v2).
//!
//! Texts are tokenized with the checkpoint's `tokenizer.json` (its fixed padding switched off, its
//! truncation set to `max_seq_length`), sorted by length so each batch pads little, run through the
//! encoder, pooled, normalized and put back in input order.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::config::BertConfig;
use super::model::BertModel;
use super::pooling::{l2_normalize, mean_pool};
use crate::{Error, Result};

/// The longest input in tokens when the directory has no `sentence_bert_config.json`.
pub const DEFAULT_MAX_SEQ_LEN: usize = 256;

/// A BERT sentence encoder with its tokenizer.
pub struct SentenceEncoder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    max_seq_len: usize,
    device: Device,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl SentenceEncoder {
    /// Loads a sentence-transformers directory: `config.json`, `tokenizer.json`, `model.safetensors`,
    /// and, when present, `sentence_bert_config.json` (`max_seq_length`) and `1_Pooling/config.json`
    /// (which must ask for mean pooling).
    pub fn load(dir: &Path) -> Result<Self> {
        let device = Device::Cpu;
        let cfg = BertConfig::from_file(&dir.join("config.json"))?;
        check_pooling(dir)?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(Error::MissingTensor(format!(
                "{} (the encoder weights)",
                weights.display()
            )));
        }
        // SAFETY: the file is memory-mapped read-only; the cache publishes it by rename and never rewrites it.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device)? };
        let model = BertModel::new(&cfg, vb)?;
        let max_seq_len = read_max_seq_len(dir)?.min(cfg.max_position_embeddings);
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), max_seq_len)?;
        Ok(Self { model, tokenizer, max_seq_len, device })
    }

    /// An encoder over a model built elsewhere (e.g. random weights in a test).
    pub fn from_parts(
        model: BertModel,
        tokenizer: tokenizers::Tokenizer,
        max_seq_len: usize,
    ) -> Result<Self> {
        let max_seq_len = max_seq_len.min(model.config().max_position_embeddings);
        let tokenizer = configure_tokenizer(tokenizer, max_seq_len)?;
        Ok(Self { model, tokenizer, max_seq_len, device: Device::Cpu })
    }

    /// The longest input in tokens; longer texts are truncated.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The embedding width.
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Unit-length embeddings of `texts`, in input order, `batch` texts per forward pass.
    pub fn encode(&self, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(tok_err)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        // longest first, as sentence-transformers sorts, so a batch's padding is small
        order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].get_ids().len()));
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(batch.max(1)) {
            let rows: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
            for (&i, e) in chunk.iter().zip(self.embed_ids(&rows)?) {
                out[i] = e;
            }
        }
        Ok(out)
    }

    /// Embeddings of already tokenized rows (with their special tokens), padded here to the longest.
    pub fn embed_ids(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let len = rows.iter().map(|r| r.len()).max().unwrap_or(0).clamp(1, self.max_seq_len);
        let pad = self.model.config().pad_token_id;
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        for r in rows {
            let r = &r[..r.len().min(len)];
            ids.extend_from_slice(r);
            ids.extend(std::iter::repeat_n(pad, len - r.len()));
            mask.extend(std::iter::repeat_n(1f32, r.len()));
            mask.extend(std::iter::repeat_n(0f32, len - r.len()));
        }
        let ids = Tensor::from_vec(ids, (rows.len(), len), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows.len(), len), &self.device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        let pooled = l2_normalize(&mean_pool(&hidden, &mask)?)?;
        Ok(pooled.to_vec2::<f32>()?)
    }
}

/// Reads `tokenizer.json` and sets it up for [`SentenceEncoder`].
fn load_tokenizer(path: &Path, max_seq_len: usize) -> Result<tokenizers::Tokenizer> {
    let tok = tokenizers::Tokenizer::from_file(path)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
    configure_tokenizer(tok, max_seq_len)
}

/// No padding (batches are padded by the encoder) and truncation at `max_seq_len` tokens, as
/// sentence-transformers overrides the tokenizer's own settings with `max_seq_length`.
fn configure_tokenizer(
    mut tok: tokenizers::Tokenizer,
    max_seq_len: usize,
) -> Result<tokenizers::Tokenizer> {
    tok.with_padding(None);
    let truncation = tokenizers::TruncationParams { max_length: max_seq_len, ..Default::default() };
    tok.with_truncation(Some(truncation)).map_err(tok_err)?;
    Ok(tok)
}

/// `max_seq_length` from `sentence_bert_config.json`, or [`DEFAULT_MAX_SEQ_LEN`].
fn read_max_seq_len(dir: &Path) -> Result<usize> {
    let path = dir.join("sentence_bert_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(DEFAULT_MAX_SEQ_LEN) };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
    Ok(v["max_seq_length"].as_u64().map_or(DEFAULT_MAX_SEQ_LEN, |n| n as usize))
}

/// Refuses a pooling config other than plain mean pooling.
fn check_pooling(dir: &Path) -> Result<()> {
    let path: PathBuf = dir.join("1_Pooling").join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::json(&path, e))?;
    let on = |k: &str| v[k].as_bool().unwrap_or(false);
    if !on("pooling_mode_mean_tokens")
        || [
            "pooling_mode_cls_token",
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
        ]
        .iter()
        .any(|k| on(k))
    {
        return Err(Error::Unsupported(format!(
            "{}: only mean pooling is implemented",
            path.display()
        )));
    }
    Ok(())
}
