//! Writing GGUF that llama.cpp loads: Hugging Face tensors go back under GGUF names, Llama q/k rows
//! are permuted back into llama.cpp's interleaved-RoPE layout, projections are quantized to the
//! chosen ggml type (falling back per matrix, as `llama-quantize` does, where a row is not a whole
//! number of blocks), and the metadata comes from the source GGUF or is built from `config.json`
//! and `tokenizer.json`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::gguf::gguf_name;
use crate::config::{Architecture, Config};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The ggml type of the written matrices (norms and other vectors stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GgufType {
    /// Half precision.
    F16,
    /// 8-bit blocks of 32.
    Q8_0,
    /// 4-bit k-quant super-blocks of 256 (Q5_0 for matrices whose rows are not a multiple of 256).
    #[serde(rename = "q4_k")]
    Q4K,
}

impl GgufType {
    /// The file-name suffix and the name users write: `f16`, `q8_0`, `q4_k`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4K => "q4_k",
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
        }
    }

    /// What llama.cpp's quantizer uses when rows do not split into whole blocks of this type.
    fn fallback(self) -> GgmlDType {
        match self {
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::F16,
            Self::Q4K => GgmlDType::Q5_0,
        }
    }

    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_MOSTLY_*).
    fn file_type(self) -> u32 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 7,
            Self::Q4K => 14,
        }
    }
}

/// What [`write_gguf`] wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GgufReport {
    /// Tensors written.
    pub tensors: usize,
    /// Matrices that took the fallback type, with the type used.
    pub fallbacks: BTreeMap<String, String>,
    /// File size in bytes.
    pub bytes: u64,
}

/// The GGUF architecture name of `cfg` (Mistral checkpoints load in llama.cpp as `llama`).
fn arch_name(cfg: &Config) -> &'static str {
    match cfg.architecture {
        Architecture::Llama | Architecture::Mistral => "llama",
        Architecture::Qwen2 => "qwen2",
    }
}

/// Metadata copied from a source GGUF, minus the keys the writer sets itself.
pub fn metadata_from_gguf(content: &gguf_file::Content) -> Vec<(String, Value)> {
    let mut md: Vec<(String, Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "general.file_type" | "general.alignment" | "general.quantization_version"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    md.sort_by(|a, b| a.0.cmp(&b.0));
    md
}

/// Metadata built from a Hugging Face config and a byte-level BPE `tokenizer.json`, with the chat
/// template: the keys llama.cpp reads for the Llama and Qwen2 architectures.
pub fn metadata_from_config(
    cfg: &Config,
    tokenizer: &Tokenizer,
    chat_template: Option<&str>,
) -> Result<Vec<(String, Value)>> {
    let arch = arch_name(cfg);
    let k = |s: &str| format!("{arch}.{s}");
    let mut md = vec![
        ("general.architecture".to_string(), Value::String(arch.into())),
        (k("context_length"), Value::U32(cfg.max_position_embeddings as u32)),
        (k("embedding_length"), Value::U32(cfg.hidden_size as u32)),
        (k("block_count"), Value::U32(cfg.num_hidden_layers as u32)),
        (k("feed_forward_length"), Value::U32(cfg.intermediate_size as u32)),
        (k("attention.head_count"), Value::U32(cfg.num_attention_heads as u32)),
        (k("attention.head_count_kv"), Value::U32(cfg.kv_heads() as u32)),
        (k("attention.layer_norm_rms_epsilon"), Value::F32(cfg.rms_norm_eps as f32)),
        (k("rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (k("rope.dimension_count"), Value::U32(cfg.head_dim() as u32)),
    ];
    if let Some(s) = &cfg.rope_scaling {
        if s.rope_type != "linear" {
            return Err(Error::Unsupported(format!(
                "GGUF export of rope scaling `{}`",
                s.rope_type
            )));
        }
        md.push((k("rope.scaling.type"), Value::String("linear".into())));
        md.push((k("rope.scaling.factor"), Value::F32(s.factor as f32)));
    }
    md.extend(tokenizer_metadata(tokenizer)?);
    if let Some(id) = tokenizer.bos_id().or(cfg.bos_token_id) {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(id)));
    }
    if let Some(id) = tokenizer.eos_id().or(cfg.eos_ids().first().copied()) {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(id)));
    }
    if let Some(t) = chat_template {
        md.push(("tokenizer.chat_template".into(), Value::String(t.into())));
    }
    Ok(md)
}

/// `tokenizer.ggml.*` for a byte-level BPE tokenizer: tokens by id, their types (control for
/// special added tokens) and the merges.
fn tokenizer_metadata(tokenizer: &Tokenizer) -> Result<Vec<(String, Value)>> {
    let doc: Json = serde_json::from_str(
        &tokenizer.inner().to_string(false).map_err(|e| Error::Tokenizer(e.to_string()))?,
    )
    .map_err(|e| Error::Tokenizer(e.to_string()))?;
    let model = &doc["model"];
    if model["type"] != "BPE" || model["byte_fallback"] == true {
        return Err(Error::Unsupported(
            "GGUF export needs a byte-level BPE tokenizer.json (GPT-2 style)".into(),
        ));
    }
    let vocab = tokenizer.inner().get_vocab(true);
    let n = vocab.len();
    let mut tokens = vec![String::new(); n];
    for (t, id) in vocab {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| {
            Error::Tokenizer(format!("token id {id} beyond the vocabulary's {n} entries"))
        })?;
        *slot = t;
    }
    let special: Vec<u32> = doc["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["special"] == true)
        .filter_map(|t| t["id"].as_u64().map(|i| i as u32))
        .collect();
    let types = (0..tokens.len() as u32)
        .map(|i| Value::I32(if special.contains(&i) { 3 } else { 1 }))
        .collect();
    let merges: Vec<Value> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            Json::String(s) => Value::String(s.clone()),
            other => Value::String(
                other
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        })
        .collect();
    Ok(vec![
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".to_string(), Value::String("default".into())),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".to_string(), Value::Array(types)),
        ("tokenizer.ggml.merges".to_string(), Value::Array(merges)),
    ])
}

/// Llama's q/k rows in llama.cpp's order: Hugging Face row `h*hd + j*hd/2 + i` becomes row
/// `h*hd + 2i + j` (the inverse of what [`super::GgufSource`] undoes on load).
fn permute_rows(t: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let hd = rows / heads;
    let rest: usize = dims[1..].iter().product();
    Ok(t.reshape((heads, 2, hd / 2, rest))?.transpose(1, 2)?.contiguous()?.reshape(dims)?)
}

/// Writes `tensors` (Hugging Face names, f32) to `path` as GGUF of type `ty` with `metadata`.
pub fn write_gguf(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    cfg: &Config,
    mut metadata: Vec<(String, Value)>,
    ty: GgufType,
) -> Result<GgufReport> {
    let permuted = arch_name(cfg) == "llama";
    let mut report = GgufReport::default();
    let mut written: Vec<(String, QTensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let mut t = t.to_dtype(candle_core::DType::F32)?;
        if permuted && (name.contains("self_attn.q_proj.") || name.contains("self_attn.k_proj.")) {
            let heads =
                if name.contains("q_proj") { cfg.num_attention_heads } else { cfg.kv_heads() };
            t = permute_rows(&t, heads)?;
        }
        let dtype = if t.rank() < 2 {
            GgmlDType::F32
        } else if t.dims()[t.rank() - 1] % ty.ggml().block_size() == 0 {
            ty.ggml()
        } else {
            let f = ty.fallback();
            report.fallbacks.insert(name.clone(), format!("{f:?}"));
            f
        };
        written.push((gguf_name(name), QTensor::quantize(&t, dtype)?));
    }
    metadata.retain(|(k, _)| k != "general.file_type" && k != "general.quantization_version");
    metadata.push(("general.file_type".into(), Value::U32(ty.file_type())));
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    let md: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = written.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = path.with_extension("gguf.partial");
    {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = BufWriter::new(file);
        gguf_file::write(&mut w, &md, &ts)?;
        let file = w.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    report.tensors = written.len();
    report.bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn permute_is_the_inverse_of_the_loaders_unpermute() {
        // 2 heads of width 4, one column: HF rows 0..8 -> llama.cpp order.
        let hf = Tensor::arange(0f32, 8., &Device::Cpu).unwrap().reshape((8, 1)).unwrap();
        let g: Vec<f32> = permute_rows(&hf, 2).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
    }
}
