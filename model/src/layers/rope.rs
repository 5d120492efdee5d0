//! Rotary position embeddings (Su et al. 2021, <https://arxiv.org/abs/2104.09864>) in Hugging
//! Face's rotate-half layout, with linear and Llama 3 frequency scaling.

use candle_core::{CpuStorage, DType, Device, Layout, Shape, Tensor};

use crate::config::Config;
use crate::precomputed::Precomputed;
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
        let mut inv_freq: Vec<f64> =
            (0..dim / 2).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / dim as f64)).collect();
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
            return Err(Error::InvalidRequest(format!(
                "position {p} exceeds the RoPE table of {} positions",
                self.cos.dim(0)?
            )));
        }
        let ids: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let ids = Tensor::new(ids.as_slice(), self.cos.device())?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            Ok(t.index_select(&ids, 0)?.unsqueeze(1)?.contiguous()?)
        };
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
            let y = candle_nn::rotary_emb::rope(&x.detach().contiguous()?, &cos, &sin)?;
            if !x.track_op() {
                return Ok(y);
            }
            x.apply_op1(Rotation {
                cos: cos.clone(),
                sin: sin.clone(),
                out: Precomputed::of_tensor("rotation", &y)?,
            })
        };
        Ok((rot(q)?, rot(k)?))
    }
}

/// RoPE as one autograd node. The rotation is orthogonal, so its backward is the rotation by the
/// opposite angles: candle's kernel again, with `sin` negated. Composed from tensor ops (what
/// candle's `rope_slow` does) it is seven nodes of the activation's size per query or key, each
/// with a zeroed gradient buffer and an addition in backward.
struct Rotation {
    cos: Tensor,
    sin: Tensor,
    out: Precomputed,
}

impl candle_core::CustomOp1 for Rotation {
    fn name(&self) -> &'static str {
        "rotation"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.take()
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(candle_nn::rotary_emb::rope(
            &grad.detach().contiguous()?,
            &self.cos,
            &self.sin.neg()?,
        )?))
    }
}

/// Llama 3.1's piecewise rescaling of the rotary wavelengths.
fn scale_llama3(
    inv_freq: &mut [f64],
    factor: f64,
    s: &crate::config::RopeScaling,
    cfg: &Config,
) -> Result<()> {
    let low = s.low_freq_factor.unwrap_or(1.0);
    let high = s.high_freq_factor.unwrap_or(4.0);
    let original = s.original_max_position_embeddings.unwrap_or(cfg.max_position_embeddings) as f64;
    if high <= low {
        return Err(Error::Unsupported(
            "llama3 rope scaling with high_freq_factor <= low_freq_factor".into(),
        ));
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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    #[test]
    fn rotation_node_equals_the_composed_rotation_and_its_gradient() {
        let dev = Device::Cpu;
        let hd = 8;
        let angles = Tensor::randn(0f32, 2.0, (16, hd / 2), &dev).unwrap();
        let rope = RotaryEmbedding { cos: angles.cos().unwrap(), sin: angles.sin().unwrap() };
        let q = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 5, hd), &dev).unwrap()).unwrap();
        let k = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 1, 5, hd), &dev).unwrap()).unwrap();
        let (rq, rk) = rope.apply(q.as_tensor(), k.as_tensor(), 4).unwrap();
        let (cos, sin) = (rope.cos.narrow(0, 4, 5).unwrap(), rope.sin.narrow(0, 4, 5).unwrap());
        let slow_q = candle_nn::rotary_emb::rope_slow(q.as_tensor(), &cos, &sin).unwrap();
        let slow_k = candle_nn::rotary_emb::rope_slow(k.as_tensor(), &cos, &sin).unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| {
            (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
        };
        assert!(max_diff(&rq, &slow_q) < 1e-6 && max_diff(&rk, &slow_k) < 1e-6);
        let cq = Tensor::randn(0f32, 1.0, rq.shape(), &dev).unwrap();
        let ck = Tensor::randn(0f32, 1.0, rk.shape(), &dev).unwrap();
        let loss = |a: &Tensor, b: &Tensor| {
            ((a * &cq).unwrap().sum_all().unwrap() + (b * &ck).unwrap().sum_all().unwrap()).unwrap()
        };
        let fast = loss(&rq, &rk).backward().unwrap();
        let slow = loss(&slow_q, &slow_k).backward().unwrap();
        for v in [&q, &k] {
            assert!(
                max_diff(fast.get(v.as_tensor()).unwrap(), slow.get(v.as_tensor()).unwrap()) < 1e-5
            );
        }
    }
}
