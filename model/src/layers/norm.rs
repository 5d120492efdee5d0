//! RMSNorm (Zhang & Sennrich 2019, <https://arxiv.org/abs/1910.07467>).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Module, Shape, Tensor};
use rayon::prelude::*;

use super::activation::contiguous;
use super::lanes::dot;

use crate::weights::Weights;
use crate::Result;

/// Root-mean-square layer normalization with a learned gain.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    /// Loads the gain `weight` of width `size`.
    pub fn new(size: usize, eps: f64, w: Weights) -> Result<Self> {
        Ok(Self { weight: w.get(size, "weight")?, eps: eps as f32 })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // candle's fused kernel has no backward: use it only when no gradient flows.
        if x.track_op() {
            candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps)
        } else if x.device().is_cpu()
            && x.dtype() == DType::F32
            && self.weight.dtype() == DType::F32
        {
            x.contiguous()?.apply_op2_no_bwd(&self.weight.contiguous()?, &RowNorm { eps: self.eps })
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
        }
    }
}

/// Rows from which [`RowNorm`] normalizes rows in parallel.
const PARALLEL_ROWS: usize = 64;

/// RMSNorm of f32 rows on the CPU, each row's sum of squares in sixteen lanes. candle's kernel sums
/// a row one value after another (a float sum the compiler may not reorder): the two norms of 30
/// layers took 0.34 ms of a `bench serve` step of some ten rows, now 0.15 (one row: 0.08, now
/// 0.05; timed inside the step).
struct RowNorm {
    eps: f32,
}

impl CustomOp2 for RowNorm {
    fn name(&self) -> &'static str {
        "row-rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = *xl.dims().last().unwrap_or(&0);
        if wl.dims() != [n] || n == 0 {
            candle_core::bail!("{}: a gain of {:?} for rows of {n}", self.name(), wl.dims());
        }
        let (x, w) = (contiguous(xs, xl)?, contiguous(ws, wl)?);
        let mut out = vec![0f32; x.len()];
        let row = |(o, x): (&mut [f32], &[f32])| norm_row(x, w, self.eps, o);
        if x.len() >= PARALLEL_ROWS * n {
            out.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(row);
        } else {
            out.chunks_mut(n).zip(x.chunks(n)).for_each(row);
        }
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }
}

/// `out = x / sqrt(mean(x^2) + eps) * w`.
fn norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let rms = (dot(x, x) / x.len() as f32 + eps).sqrt();
    for ((o, x), w) in out.iter_mut().zip(x).zip(w) {
        *o = x / rms * w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fast path against candle's kernel and the f64 formula, on rows of 576 (whole lanes)
    /// and 40 (a remainder), few and many rows, and a strided input.
    #[test]
    fn row_norm_matches_the_formula() {
        let dev = Device::Cpu;
        for (rows, n) in [(3, 576), (70, 40), (1, 7)] {
            let x = Tensor::randn(0f32, 2.0, (rows, 2 * n), &dev).unwrap().narrow(1, 0, n).unwrap();
            let w = Tensor::randn(1f32, 0.1, n, &dev).unwrap();
            let norm = RmsNorm { weight: w.clone(), eps: 1e-5 };
            let got: Vec<Vec<f32>> = norm.forward(&x).unwrap().to_vec2().unwrap();
            let candle: Vec<Vec<f32>> =
                candle_nn::ops::rms_norm(&x.contiguous().unwrap(), &w, 1e-5)
                    .unwrap()
                    .to_vec2()
                    .unwrap();
            let (xv, wv): (Vec<Vec<f32>>, Vec<f32>) = (x.to_vec2().unwrap(), w.to_vec1().unwrap());
            for r in 0..rows {
                let ms = xv[r].iter().map(|&v| v as f64 * v as f64).sum::<f64>() / n as f64;
                for i in 0..n {
                    let want = xv[r][i] as f64 / (ms + 1e-5).sqrt() * wv[i] as f64;
                    assert!(
                        (got[r][i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                        "rows {rows} n {n} [{r}][{i}]: {} vs {want}",
                        got[r][i]
                    );
                    assert!((got[r][i] - candle[r][i]).abs() < 1e-5 * candle[r][i].abs().max(1.0));
                }
            }
        }
    }
}
