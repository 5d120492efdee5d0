//! [`Tokenizer`]: a `tokenizers::Tokenizer` with the checkpoint's BOS/EOS conventions.

use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use serde_json::Value as Json;

use super::tokenizer_json_from_gguf;
use crate::{Error, Result};

/// Text <-> token ids, with the special tokens of the checkpoint.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Prepend BOS ourselves (GGUF tokenizers carry no post-processor).
    prepend_bos: bool,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

/// A token as written in `tokenizer_config.json`: a string or `{"content": ...}`.
fn token_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_string),
        _ => None,
    }
}

impl Tokenizer {
    /// Reads `tokenizer.json`; BOS/EOS come from `tokenizer_config.json` beside it when present.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let cfg_path = path.with_file_name("tokenizer_config.json");
        let cfg: Json = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| Error::json(&cfg_path, e))?,
            Err(_) => Json::Null,
        };
        Ok(Self {
            inner,
            bos_token: token_text(cfg.get("bos_token")),
            eos_token: token_text(cfg.get("eos_token")),
            prepend_bos: false,
        })
    }

    /// A `tokenizer.json` document given as text, without special BOS/EOS conventions.
    pub fn from_json(json: &str) -> Result<Self> {
        let inner: tokenizers::Tokenizer = json.parse().map_err(tok_err)?;
        Ok(Self { inner, bos_token: None, eos_token: None, prepend_bos: false })
    }

    /// Rebuilds the tokenizer from GGUF metadata.
    pub fn from_gguf(content: &Content) -> Result<Self> {
        let (doc, prepend_bos) = tokenizer_json_from_gguf(content)?;
        let inner: tokenizers::Tokenizer = doc.to_string().parse().map_err(tok_err)?;
        let token = |key: &str| {
            let id = content.metadata.get(key).and_then(|v| v.to_u32().ok())?;
            inner.id_to_token(id)
        };
        Ok(Self {
            bos_token: token("tokenizer.ggml.bos_token_id"),
            eos_token: token("tokenizer.ggml.eos_token_id"),
            inner,
            prepend_bos,
        })
    }

    /// Token ids of `text`; special-token strings in `text` (e.g. `<|im_start|>`) become their ids.
    /// `add_special_tokens` adds what the checkpoint adds to a fresh sequence (e.g. BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode_fast(text, add_special_tokens).map_err(tok_err)?;
        let mut ids = enc.get_ids().to_vec();
        if add_special_tokens && self.prepend_bos {
            if let Some(bos) = self.bos_id() {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    /// Text of `ids`, optionally without special tokens.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(tok_err)
    }

    /// The id of a token string.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Beginning-of-sequence token text.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// End-of-sequence token text.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// End-of-sequence id.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_to_id(t))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` object.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
