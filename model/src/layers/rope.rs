//! Rotary position embeddings (Su et al. 2021, <https://arxiv.org/abs/2104.09864>) in Hugging
//! Face's rotate-half layout, with linear and Llama 3 frequency scaling.

use candle_core::{DType, Device, Tensor};

use crate::config::Config;
use crate::{Error, Result};

/// Positions beyond this many are not precomputed (Llama 3 names 131072).
const MAX_TABLE: usize = 32_768;

/// Precomputed cos/sin tables.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
}

impl RotaryEmbedding {
    /// Builds the tables for `cfg`; `freq_factors` (GGUF's `rope_freqs.weight`) divide the frequencies.
    pub fn new(cfg: &Config, freq_factors: Option<&Tensor>, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let mut inv_freq: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / dim as f64))
            .collect();
        let mut position_scale = 1.0;
        if let Some(s) = &cfg.rope_scaling {
            match s.rope_type.as_str() {
                "linear" => position_scale = 1.0 / s.factor,
                "llama3" => scale_llama3(&mut inv_freq, s.factor, s, cfg)?,
                "default" => {}
                other => return Err(Error::Unsupported(format!("rope scaling `{other}`"))),
            }
        }
        if let Some(f) = freq_factors {
            let f = f.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            for (x, d) in inv_freq.iter_mut().zip(f) {
                *x /= d as f64;
            }
        }
        let len = cfg.max_position_embeddings.min(MAX_TABLE);
        let mut angles = Vec::with_capacity(len * dim / 2);
        for p in 0..len {
            for f in &inv_freq {
                angles.push((p as f64 * position_scale * f) as f32);
            }
        }
        let angles = Tensor::from_vec(angles, (len, dim / 2), device)?;
        Ok(Self { cos: angles.cos()?, sin: angles.sin()? })
    }

    /// The `(rows, 1, head_dim / 2)` cos and sin tables of one position per row (a decoding step
    /// of independent sequences, each at its own length).
    pub fn at_positions(&self, positions: &[usize]) -> Result<(Tensor, Tensor)> {
        if let Some(&p) = positions.iter().find(|&&p| p >= self.cos.dim(0).unwrap_or(0)) {
            return Err(Error::InvalidRequest(format!("position {p} exceeds the RoPE table of {} positions", self.cos.dim(0)?)));
        }
        let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let ids = Tensor::new(ids.as_slice(), self.cos.device())?;
        let pick = |t: &Tensor| -> Result<Tensor> { Ok(t.index_select(&ids, 0)?.unsqueeze(1)?.contiguous()?) };
        Ok((pick(&self.cos)?, pick(&self.sin)?))
    }

    /// Rotates `x` `(rows, heads, 1, head_dim)` with per-row tables from [`Self::at_positions`]:
    /// the same arithmetic, element by element, as [`Self::apply`] on each row alone.
    pub fn apply_rows(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?)
    }

    /// Rotates `q` and `k` (`(batch, heads, seq, head_dim)`) for positions `offset..offset+seq`.
    pub fn apply(&self, q: &Tensor, k: &Tensor, offset: usize) -> Result<(Tensor, Tensor)> {
        let seq = q.dim(2)?;
        if offset + seq > self.cos.dim(0)? {
            return Err(Error::InvalidRequest(format!(
                "position {} exceeds the RoPE table of {} positions",
                offset + seq,
                self.cos.dim(0)?
            )));
        }
        let cos = self.cos.narrow(0, offset, seq)?;
        let sin = self.sin.narrow(0, offset, seq)?;
        let rot = |x: &Tensor| -> candle_core::Result<Tensor> {
            if x.track_op() {
                candle_nn::rotary_emb::rope_slow(x, &cos, &sin)
            } else {
                candle_nn::rotary_emb::rope(&x.contiguous()?, &cos, &sin)
            }
        };
        Ok((rot(q)?, rot(k)?))
    }
}

/// Llama 3.1's piecewise rescaling of the rotary wavelengths.
fn scale_llama3(inv_freq: &mut [f64], factor: f64, s: &crate::config::RopeScaling, cfg: &Config) -> Result<()> {
    let low = s.low_freq_factor.unwrap_or(1.0);
    let high = s.high_freq_factor.unwrap_or(4.0);
    let original = s.original_max_position_embeddings.unwrap_or(cfg.max_position_embeddings) as f64;
    if high <= low {
        return Err(Error::Unsupported("llama3 rope scaling with high_freq_factor <= low_freq_factor".into()));
    }
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    for f in inv_freq.iter_mut() {
        let wavelen = 2.0 * std::f64::consts::PI / *f;
        if wavelen > low_wavelen {
            *f /= factor;
        } else if wavelen >= high_wavelen {
            let smooth = (original / wavelen - low) / (high - low);
            *f = (1.0 - smooth) * *f / factor + smooth * *f;
        }
    }
    Ok(())
}
