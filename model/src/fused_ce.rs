//! Log-probabilities of target tokens through a frozen vocabulary head, fused and chunked: the
//! `(n, vocab)` logits are never kept. Forward computes `h W^T` a block of rows at a time and
//! keeps only the log-sum-exp of each row; backward recomputes each block's logits, turns them
//! into `g * (onehot - softmax)` in place and multiplies by `W`. Peak memory is one block of
//! logits instead of the logits, their log-softmax and its intermediates for every position
//! (hundreds of MB for a 49k vocabulary). The head is frozen: only `h` gets a gradient.

use std::sync::Mutex;

use candle_core::quantized::QMatMul;
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};

use crate::layers::bf16_gemm::{self, PackedB};
use crate::layers::weight_f32;
use rayon::prelude::*;

/// Rows of logits materialized at once.
const BLOCK_ROWS: usize = 128;

/// One side of the head's products: f32 through candle's GEMM, or packed for bfloat16 inside a
/// [`bf16_products`](crate::layers::bf16_products) scope.
enum Operand {
    F32(Tensor),
    Bf16(PackedB),
}

impl Operand {
    /// `W^T`, the right operand of the logits `h W^T`.
    fn head(weight: &QMatMul, bf16: bool) -> candle_core::Result<Self> {
        let w = weight_f32(weight, &Device::Cpu)?;
        Ok(if bf16 { Self::Bf16(PackedB::of_transposed(&w)?) } else { Self::F32(w.t()?) })
    }

    /// `W`, the right operand of the input gradient `d W`.
    fn input_grad(weight: &QMatMul, bf16: bool) -> candle_core::Result<Self> {
        let w = weight_f32(weight, &Device::Cpu)?;
        Ok(if bf16 { Self::Bf16(PackedB::of_plain(&w)?) } else { Self::F32(w) })
    }

    fn columns(&self) -> candle_core::Result<usize> {
        match self {
            Self::F32(w) => w.dim(1),
            Self::Bf16(b) => Ok(b.n()),
        }
    }

    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::F32(w) => x.matmul(w),
            Self::Bf16(b) => bf16_gemm::product(x, b),
        }
    }
}

/// `(rows, vocab)` logits of a block as an owned contiguous vector.
fn block_logits(h: &Tensor, head: &Operand, start: usize, rows: usize) -> candle_core::Result<Vec<f32>> {
    let x = h.narrow(0, start, rows)?.contiguous()?;
    head.product(&x)?.flatten_all()?.to_vec1::<f32>()
}

/// Log-sum-exp and target logit of each row of `logits` `(rows, vocab)`.
fn lse_rows(logits: &[f32], vocab: usize, targets: &[u32]) -> Vec<(f32, f32)> {
    logits
        .par_chunks(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
            (max + sum.ln(), row[t as usize])
        })
        .collect()
}

struct FusedLogprob {
    weight: QMatMul,
    targets: Vec<u32>,
    lse: Vec<f32>,
    out: Mutex<Option<Vec<f32>>>,
    /// The forward ran in bfloat16, so the backward does too.
    bf16: bool,
}

impl CustomOp1 for FusedLogprob {
    fn name(&self) -> &'static str {
        "fused-target-logprob"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = self
            .out
            .lock()
            .map_err(|_| candle_core::Error::Msg("fused-logprob: poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("fused-logprob: forward run twice".into()))?;
        Ok((CpuStorage::F32(out), Shape::from(l.dims()[0])))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let head = Operand::head(&self.weight, self.bf16)?;
        let w = Operand::input_grad(&self.weight, self.bf16)?;
        let vocab = head.columns()?;
        let n = arg.dim(0)?;
        let g = grad.flatten_all()?.to_vec1::<f32>()?;
        let h = arg.detach();
        let mut parts = Vec::with_capacity(n.div_ceil(BLOCK_ROWS));
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            let mut logits = block_logits(&h, &head, start, rows)?;
            let (tg, lse, gs) = (&self.targets[start..start + rows], &self.lse[start..start + rows], &g[start..start + rows]);
            logits.par_chunks_mut(vocab).enumerate().for_each(|(i, row)| {
                let (m, gi) = (lse[i], gs[i]);
                for x in row.iter_mut() {
                    *x = -gi * (*x - m).exp();
                }
                row[tg[i] as usize] += gi;
            });
            let d = Tensor::from_vec(logits, (rows, vocab), arg.device())?;
            parts.push(w.product(&d)?);
            start += rows;
        }
        Ok(Some(Tensor::cat(&parts, 0)?))
    }
}

/// `log softmax(h W^T)[i, targets[i]]` for `h` `(n, hidden)` and a frozen head `weight`
/// `(vocab, hidden)`, `(n,)`. Differentiable in `h` (on CPU); the logits are never stored.
pub fn target_logprobs(h: &Tensor, weight: &QMatMul, targets: &[u32]) -> candle_core::Result<Tensor> {
    let n = h.dim(0)?;
    if targets.len() != n {
        candle_core::bail!("fused-logprob: {} targets for {n} rows", targets.len());
    }
    let bf16 = bf16_gemm::active() && h.device().is_cpu();
    let head = Operand::head(weight, bf16)?;
    let vocab = head.columns()?;
    let hd = h.detach();
    let mut lse = Vec::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let rows = BLOCK_ROWS.min(n - start);
        let logits = block_logits(&hd, &head, start, rows)?;
        for (l, t) in lse_rows(&logits, vocab, &targets[start..start + rows]) {
            lse.push(l);
            out.push(t - l);
        }
        start += rows;
    }
    if !h.track_op() || !h.device().is_cpu() {
        return Tensor::from_vec(out, n, h.device());
    }
    drop(head);
    h.apply_op1(FusedLogprob { weight: weight.clone(), targets: targets.to_vec(), lse, out: Mutex::new(Some(out)), bf16 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    #[test]
    fn matches_log_softmax_and_its_gradient() {
        let dev = Device::Cpu;
        let (n, d, v) = (300, 8, 37);
        let w = Tensor::randn(0f32, 1.0, (v, d), &dev).unwrap();
        let h = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, d), &dev).unwrap()).unwrap();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 7) % v as u32).collect();
        let tt = Tensor::from_vec(targets.clone(), (n, 1), &dev).unwrap();
        let coef = Tensor::randn(0f32, 1.0, n, &dev).unwrap();

        let reference = candle_nn::ops::log_softmax(&h.as_tensor().matmul(&w.t().unwrap()).unwrap(), D::Minus1)
            .unwrap()
            .gather(&tt, 1)
            .unwrap()
            .squeeze(1)
            .unwrap();
        let fused = target_logprobs(h.as_tensor(), &QMatMul::Tensor(w.clone()), &targets).unwrap();
        let diff = (&reference - &fused).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "forward differs by {diff}");

        let g_ref = (reference * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let g_fused = (fused * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g_ref.get(h.as_tensor()).unwrap(), g_fused.get(h.as_tensor()).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "gradient differs by {diff}");
    }
}
