//! GGUF checkpoints (llama.cpp's format): Hugging Face names are mapped onto GGUF names, and the
//! q/k row permutation that llama.cpp applies for interleaved RoPE on Llama is undone, so the model
//! always runs Hugging Face's rotate-half RoPE and PEFT adapters line up with its rows.

use std::borrow::Cow;
use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use candle_core::quantized::{gguf_file, QStorage, QTensor};
use candle_core::{Device, Tensor};
use memmap2::Mmap;

use super::WeightSource;
use crate::{Error, Result};

/// A memory-mapped GGUF file.
pub struct GgufSource {
    path: PathBuf,
    mmap: Mmap,
    content: gguf_file::Content,
    /// `Some((heads, kv_heads))` when q/k rows are stored permuted (Llama-arch GGUFs).
    permuted: Option<(usize, usize)>,
}

impl GgufSource {
    /// Maps `path` and reads its header.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is only read; a concurrent writer would be a user error as for any mmap.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let content =
            gguf_file::Content::read(&mut Cursor::new(&mmap[..])).map_err(|e| e.with_path(path))?;
        let md = &content.metadata;
        let arch = md.get("general.architecture").and_then(|v| v.to_string().ok()).cloned();
        let heads = |k: &str| md.get(k).and_then(|v| v.to_u32().ok()).map(|v| v as usize);
        let permuted = match arch.as_deref() {
            Some(a @ ("llama" | "mistral")) => {
                let h = heads(&format!("{a}.attention.head_count"))
                    .ok_or_else(|| Error::GgufMetadata(format!("{a}.attention.head_count")))?;
                Some((h, heads(&format!("{a}.attention.head_count_kv")).unwrap_or(h)))
            }
            _ => None,
        };
        Ok(Self { path: path.to_path_buf(), mmap, content, permuted })
    }

    /// The parsed header: metadata and tensor infos.
    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self, gguf_name: &str, device: &Device) -> Result<QTensor> {
        let mut cursor = Cursor::new(&self.mmap[..]);
        Ok(self.content.tensor(&mut cursor, gguf_name, device)?)
    }
}

/// Maps a Hugging Face tensor name onto its GGUF name; unknown names pass through unchanged.
pub fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else { return hf.into() };
    let Some((layer, rest)) = rest.split_once('.') else { return hf.into() };
    let Some((module, suffix)) = rest.rsplit_once('.') else { return hf.into() };
    let short = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return hf.into(),
    };
    format!("blk.{layer}.{short}.{suffix}")
}

/// Undoes llama.cpp's permutation: GGUF row `h*hd + 2i + j` holds Hugging Face row `h*hd + j*hd/2 + i`.
fn unpermute_rows(data: &[u8], rows: usize, heads: usize) -> Vec<u8> {
    let row_bytes = data.len() / rows;
    let hd = rows / heads;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let src = h * hd + 2 * i + j;
                let dst = h * hd + j * (hd / 2) + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    out
}

impl WeightSource for GgufSource {
    fn contains(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(&gguf_name(name))
    }

    fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let qt = self.qtensor(name, device)?.ok_or_else(|| Error::MissingTensor(name.into()))?;
        Ok(qt.dequantize(device)?)
    }

    fn qtensor(&self, name: &str, device: &Device) -> Result<Option<QTensor>> {
        let gname = gguf_name(name);
        if !self.content.tensor_infos.contains_key(&gname) {
            return Ok(None);
        }
        let qt = self.read(&gname, device)?;
        let heads = match self.permuted {
            Some((h, _)) if gname.ends_with("attn_q.weight") || gname.ends_with("attn_q.bias") => h,
            Some((_, kv)) if gname.ends_with("attn_k.weight") || gname.ends_with("attn_k.bias") => {
                kv
            }
            _ => return Ok(Some(qt)),
        };
        let rows = qt.shape().dims()[0];
        let data: Cow<'_, [u8]> = qt.data()?;
        let fixed = unpermute_rows(&data, rows, heads);
        let storage = QStorage::from_data(Cow::Owned(fixed), device, qt.dtype())?;
        Ok(Some(QTensor::new(storage, qt.shape().clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_onto_gguf() {
        assert_eq!(gguf_name("model.layers.3.self_attn.q_proj.weight"), "blk.3.attn_q.weight");
        assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight"), "blk.0.ffn_down.weight");
        assert_eq!(gguf_name("model.embed_tokens.weight"), "token_embd.weight");
        assert_eq!(gguf_name("rope_freqs.weight"), "rope_freqs.weight");
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // 2 heads of width 4, one byte per row: HF rows 0..8.
        let hf: Vec<u8> = (0..8).collect();
        // llama.cpp: reshape (heads, 2, hd/2) -> swap axes 1,2.
        let mut gguf = vec![0u8; 8];
        for h in 0..2 {
            for j in 0..2 {
                for i in 0..2 {
                    gguf[h * 4 + i * 2 + j] = hf[h * 4 + j * 2 + i];
                }
            }
        }
        assert_eq!(unpermute_rows(&gguf, 8, 2), hf);
    }
}
