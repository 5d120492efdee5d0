//! The architecture hyper-parameters, mirroring a Hugging Face `config.json` for the Llama family
//! (Llama, Mistral, Qwen2), and their reconstruction from GGUF metadata.

use std::path::Path;

use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which member of the family a checkpoint is; they differ only in details the config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama 1-3, TinyLlama, SmolLM: no biases, no sliding window.
    Llama,
    /// Mistral: sliding-window attention.
    Mistral,
    /// Qwen2: biases on q, k and v.
    Qwen2,
}

/// RoPE frequency scaling, as in the `rope_scaling` entry of `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    /// `linear` or `llama3` (`rope_type` in newer files, `type` in older ones).
    #[serde(alias = "type")]
    pub rope_type: String,
    /// The context extension factor.
    pub factor: f64,
    /// Llama 3: wavelengths above `original / low_freq_factor` are divided by `factor`.
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    /// Llama 3: wavelengths below `original / high_freq_factor` are kept.
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    /// Llama 3: the pre-training context length.
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

/// The hyper-parameters of a decoder-only Llama-family transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// `model_type`: llama, mistral or qwen2.
    #[serde(rename = "model_type")]
    pub architecture: Architecture,
    /// Number of token embeddings.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Longest context the checkpoint was trained for.
    #[serde(default = "default_max_position")]
    pub max_position_embeddings: usize,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Optional RoPE frequency scaling.
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// Whether the output projection shares the token embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Mistral/Qwen2: attend only to this many previous positions.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Qwen2: whether `sliding_window` is in force (Qwen2 checkpoints name one but disable it).
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Beginning-of-sequence token id.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token id(s).
    #[serde(default)]
    pub eos_token_id: Option<EosTokenId>,
}

/// `eos_token_id` is a single id in most configs and a list in Llama 3's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EosTokenId {
    /// One id.
    One(u32),
    /// Several ids, any of which ends a sequence.
    Many(Vec<u32>),
}

fn default_max_position() -> usize {
    4096
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_rms_eps() -> f64 {
    1e-6
}

impl Config {
    /// Reads a Hugging Face `config.json`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::json(path, e))
    }

    /// Number of key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The sliding attention window in force, if any.
    pub fn effective_sliding_window(&self) -> Option<usize> {
        match (self.architecture, self.use_sliding_window) {
            (_, Some(false)) => None,
            (Architecture::Qwen2, None) => None,
            _ => self.sliding_window,
        }
    }

    /// The end-of-sequence ids named by the config.
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            None => vec![],
            Some(EosTokenId::One(id)) => vec![*id],
            Some(EosTokenId::Many(ids)) => ids.clone(),
        }
    }

    /// Rebuilds the config from GGUF metadata (`llama.*`, `qwen2.*` keys).
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let md = &content.metadata;
        let arch_name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| Error::GgufMetadata("general.architecture".into()))?
            .clone();
        let architecture = match arch_name.as_str() {
            "llama" => Architecture::Llama,
            "mistral" => Architecture::Mistral,
            "qwen2" => Architecture::Qwen2,
            other => return Err(Error::Unsupported(format!("GGUF architecture `{other}`"))),
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let get_u = |k: &str| -> Result<usize> {
            let full = key(k);
            md.get(&full)
                .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
                .map(|v| v as usize)
                .ok_or(Error::GgufMetadata(full))
        };
        let get_f = |k: &str| md.get(&key(k)).and_then(|v| v.to_f32().ok()).map(f64::from);
        let heads = get_u("attention.head_count")?;
        let hidden = get_u("embedding_length")?;
        let vocab_size = match md.get("tokenizer.ggml.tokens").and_then(|v| v.to_vec().ok()) {
            Some(tokens) => tokens.len(),
            None => content
                .tensor_infos
                .get("token_embd.weight")
                .map(|t| t.shape.dims()[0])
                .ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?,
        };
        let rope_scaling = match md.get(&key("rope.scaling.type")).and_then(|v| v.to_string().ok())
        {
            Some(t) if t == "linear" => Some(RopeScaling {
                rope_type: "linear".into(),
                factor: get_f("rope.scaling.factor").unwrap_or(1.0),
                low_freq_factor: None,
                high_freq_factor: None,
                original_max_position_embeddings: get_u("rope.scaling.original_context_length")
                    .ok(),
            }),
            Some(t) if t != "none" => {
                return Err(Error::Unsupported(format!("GGUF rope scaling `{t}`")))
            }
            _ => None,
        };
        let u32_key = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
        Ok(Self {
            architecture,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: get_u("feed_forward_length")?,
            num_hidden_layers: get_u("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(get_u("attention.head_count_kv").unwrap_or(heads)),
            head_dim: get_u("attention.key_length").ok().or(get_u("rope.dimension_count").ok()),
            max_position_embeddings: get_u("context_length").unwrap_or(default_max_position()),
            rope_theta: get_f("rope.freq_base").unwrap_or(default_rope_theta()),
            rope_scaling,
            rms_norm_eps: get_f("attention.layer_norm_rms_epsilon").unwrap_or(default_rms_eps()),
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            sliding_window: get_u("attention.sliding_window").ok(),
            use_sliding_window: None,
            bos_token_id: u32_key("tokenizer.ggml.bos_token_id"),
            eos_token_id: u32_key("tokenizer.ggml.eos_token_id").map(EosTokenId::One),
        })
    }
}
