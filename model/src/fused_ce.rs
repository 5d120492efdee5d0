//! Log-probabilities of target tokens through a frozen vocabulary head, fused and chunked: the
//! `(n, vocab)` logits are never kept. Forward runs over the vocabulary a chunk of head rows at a
//! time, keeping a running log-sum-exp per row and the target's logit; backward recomputes each
//! chunk's logits, turns them into `g * (onehot - softmax)` in place with the stored log-sum-exp
//! and adds their product with the chunk's head rows to the input gradient. Peak memory is one
//! chunk of logits and the chunk's head operands instead of the logits, their log-softmax and its
//! intermediates for every position (hundreds of MB for a 49k vocabulary), or of the whole head
//! packed for bf16 (twice 56 MB for SmolLM2). The head is frozen: only `h` gets a gradient.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::layers::bf16_gemm::{self, PackedB};
use crate::layers::embedding::{dequantize_rows, row_blocks};
use crate::layers::weight_f32;
use crate::precomputed::Precomputed;

/// Head rows (vocabulary entries) per chunk.
const VOCAB_CHUNK: usize = 4096;
/// Input rows per pass over the vocabulary: bounds a chunk of logits to 16 MB.
const BLOCK_ROWS: usize = 1024;

/// One side of a chunk's products: f32 through candle's GEMM, or packed for bfloat16 inside a
/// [`bf16_products`](crate::layers::bf16_products) scope.
enum Operand {
    F32(Tensor),
    Bf16(PackedB),
}

impl Operand {
    /// `W_c^T` for head rows `w_c` `(len, hidden)`: the right operand of the logits `h W_c^T`.
    fn head(w_c: &Tensor, bf16: bool) -> candle_core::Result<Self> {
        Ok(if bf16 { Self::Bf16(PackedB::of_transposed(w_c)?) } else { Self::F32(w_c.t()?) })
    }

    /// `W_c`, the right operand of the input gradient `d_c W_c`.
    fn input_grad(w_c: &Tensor, bf16: bool) -> candle_core::Result<Self> {
        Ok(if bf16 { Self::Bf16(PackedB::of_plain(w_c)?) } else { Self::F32(w_c.clone()) })
    }

    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::F32(w) => x.matmul(w),
            Self::Bf16(b) => bf16_gemm::product(x, b),
        }
    }
}

/// The head's rows in f32, a chunk at a time. A quantized head in a ggml block format is
/// dequantized chunk by chunk from its own bytes (rows are whole blocks), so no f32 copy of the
/// whole head (113 MB for SmolLM2's tied embedding) is ever alive; other formats are dequantized
/// once.
enum Head {
    Rows(Tensor),
    Blocks(std::sync::Arc<QTensor>),
}

impl Head {
    fn new(weight: &QMatMul) -> candle_core::Result<Self> {
        Ok(match weight {
            QMatMul::QTensor(q) if row_blocks(q) => Self::Blocks(q.clone()),
            _ => Self::Rows(weight_f32(weight, &Device::Cpu)?),
        })
    }

    fn vocab(&self) -> candle_core::Result<usize> {
        match self {
            Self::Rows(w) => w.dim(0),
            Self::Blocks(q) => Ok(q.shape().dims()[0]),
        }
    }

    /// Rows `c0..c0 + len`, f32 `(len, hidden)`.
    fn rows(&self, c0: usize, len: usize) -> candle_core::Result<Tensor> {
        match self {
            Self::Rows(w) => w.narrow(0, c0, len),
            Self::Blocks(q) => dequantize_rows(q, c0..c0 + len),
        }
    }

    /// `(first vocabulary id, rows)` of each chunk of `chunk` rows.
    fn chunks(
        &self,
        chunk: usize,
    ) -> candle_core::Result<impl Iterator<Item = candle_core::Result<(usize, Tensor)>> + '_> {
        let vocab = self.vocab()?;
        Ok((0..vocab).step_by(chunk).map(move |c0| Ok((c0, self.rows(c0, chunk.min(vocab - c0))?))))
    }
}

/// The logits `(rows, len)` of one block of rows against one chunk, as an owned vector.
fn logits(x: &Tensor, head: &Operand) -> candle_core::Result<Vec<f32>> {
    head.product(x)?.flatten_all()?.to_vec1::<f32>()
}

struct FusedLogprob {
    weight: QMatMul,
    targets: Vec<u32>,
    lse: Vec<f32>,
    out: Precomputed,
    /// The forward ran in bfloat16, so the backward does too.
    bf16: bool,
    chunk: usize,
}

impl CustomOp1 for FusedLogprob {
    fn name(&self) -> &'static str {
        "fused-target-logprob"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.take()
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let head = Head::new(&self.weight)?;
        let n = arg.dim(0)?;
        let g = grad.flatten_all()?.to_vec1::<f32>()?;
        let h = arg.detach().contiguous()?;
        let mut parts = Vec::with_capacity(n.div_ceil(BLOCK_ROWS));
        for start in (0..n).step_by(BLOCK_ROWS) {
            let rows = BLOCK_ROWS.min(n - start);
            let x = h.narrow(0, start, rows)?;
            let (tg, lse, gs) = (
                &self.targets[start..start + rows],
                &self.lse[start..start + rows],
                &g[start..start + rows],
            );
            let mut dx: Option<Tensor> = None;
            for c in head.chunks(self.chunk)? {
                let (c0, w_c) = c?;
                let len = w_c.dim(0)?;
                let mut d = logits(&x, &Operand::head(&w_c, self.bf16)?)?;
                d.par_chunks_mut(len).enumerate().for_each(|(i, row)| {
                    let (m, gi) = (lse[i], gs[i]);
                    for v in row.iter_mut() {
                        *v = -gi * (*v - m).exp();
                    }
                    if let Some(t) = (tg[i] as usize).checked_sub(c0).filter(|&t| t < len) {
                        row[t] += gi;
                    }
                });
                let d = Tensor::from_vec(d, (rows, len), arg.device())?;
                let part = Operand::input_grad(&w_c, self.bf16)?.product(&d)?;
                dx = Some(match dx {
                    Some(acc) => (acc + part)?,
                    None => part,
                });
            }
            parts.push(dx.ok_or_else(|| {
                candle_core::Error::Msg("fused-logprob: empty vocabulary".into())
            })?);
        }
        Ok(Some(Tensor::cat(&parts, 0)?))
    }
}

/// `log softmax(h W^T)[i, targets[i]]` for `h` `(n, hidden)` and a frozen head `weight`
/// `(vocab, hidden)`, `(n,)`. Differentiable in `h` (on CPU); the logits are never stored.
pub fn target_logprobs(
    h: &Tensor,
    weight: &QMatMul,
    targets: &[u32],
) -> candle_core::Result<Tensor> {
    target_logprobs_in_chunks(h, weight, targets, VOCAB_CHUNK)
}

fn target_logprobs_in_chunks(
    h: &Tensor,
    weight: &QMatMul,
    targets: &[u32],
    chunk: usize,
) -> candle_core::Result<Tensor> {
    let n = h.dim(0)?;
    if targets.len() != n {
        candle_core::bail!("fused-logprob: {} targets for {n} rows", targets.len());
    }
    let bf16 = bf16_gemm::active() && h.device().is_cpu();
    let head = Head::new(weight)?;
    let vocab = head.vocab()?;
    if let Some(t) = targets.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("fused-logprob: target {t} is outside the vocabulary of {vocab}");
    }
    let hd = h.detach().contiguous()?;
    // Running (max, sum of exp(x - max)) per row, and the target's logit.
    let mut acc = vec![(f32::NEG_INFINITY, 0f32, 0f32); n];
    for start in (0..n).step_by(BLOCK_ROWS) {
        let rows = BLOCK_ROWS.min(n - start);
        let x = hd.narrow(0, start, rows)?;
        let (tg, acc) = (&targets[start..start + rows], &mut acc[start..start + rows]);
        for c in head.chunks(chunk)? {
            let (c0, w_c) = c?;
            let len = w_c.dim(0)?;
            let l = logits(&x, &Operand::head(&w_c, bf16)?)?;
            l.par_chunks(len).zip(acc.par_iter_mut()).zip(tg.par_iter()).for_each(
                |((row, (max, sum, tl)), &t)| {
                    let m = row.iter().copied().fold(*max, f32::max);
                    *sum =
                        *sum * (*max - m).exp() + row.iter().map(|&x| (x - m).exp()).sum::<f32>();
                    *max = m;
                    if let Some(t) = (t as usize).checked_sub(c0).filter(|&t| t < len) {
                        *tl = row[t];
                    }
                },
            );
        }
    }
    let lse: Vec<f32> = acc.iter().map(|&(m, s, _)| m + s.ln()).collect();
    let out: Vec<f32> = acc.iter().zip(&lse).map(|(&(_, _, t), &l)| t - l).collect();
    if !h.track_op() || !h.device().is_cpu() {
        return Tensor::from_vec(out, n, h.device());
    }
    drop(head);
    h.apply_op1(FusedLogprob {
        weight: weight.clone(),
        targets: targets.to_vec(),
        lse,
        out: Precomputed::new("fused-logprob", out, n),
        bf16,
        chunk,
    })
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

        let reference =
            candle_nn::ops::log_softmax(&h.as_tensor().matmul(&w.t().unwrap()).unwrap(), D::Minus1)
                .unwrap()
                .gather(&tt, 1)
                .unwrap()
                .squeeze(1)
                .unwrap();
        // Chunks of 10 vocabulary rows: the running log-sum-exp crosses three chunk boundaries.
        let fused =
            target_logprobs_in_chunks(h.as_tensor(), &QMatMul::Tensor(w.clone()), &targets, 10)
                .unwrap();
        let diff = (&reference - &fused)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "forward differs by {diff}");

        let g_ref = (reference * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let g_fused = (fused * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g_ref.get(h.as_tensor()).unwrap(), g_fused.get(h.as_tensor()).unwrap());
        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "gradient differs by {diff}");

        // In bf16 (where the CPU has it) the same values up to bf16 rounding of the products.
        let whole = target_logprobs(h.as_tensor(), &QMatMul::Tensor(w.clone()), &targets).unwrap();
        let bf = crate::layers::bf16_products(true, || {
            target_logprobs_in_chunks(h.as_tensor(), &QMatMul::Tensor(w.clone()), &targets, 10)
                .unwrap()
        });
        let diff =
            (&whole - &bf).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // Rounding both operands to bf16 moves a logit by at most 2^-8 of sum |h_i w_i|; a
        // log-probability (logit minus log-sum-exp) by at most twice that.
        let magnitude = h
            .as_tensor()
            .abs()
            .unwrap()
            .matmul(&w.abs().unwrap().t().unwrap())
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff <= magnitude / 128.0,
            "bf16 forward differs by {diff} (logit magnitude {magnitude})"
        );
        let g_bf = (bf * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let diff = (a - g_bf.get(h.as_tensor()).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // The softmax carries the logits' error into the gradient: a few percent of its size.
        let size = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff <= 0.03 * size, "bf16 gradient differs by {diff} (gradient size {size})");
    }

    #[test]
    fn a_quantized_head_dequantized_chunk_by_chunk_equals_the_whole_head_dequantized() {
        use candle_core::quantized::GgmlDType;
        let dev = Device::Cpu;
        let (n, d, v) = (20, 64, 45);
        let q = std::sync::Arc::new(
            QTensor::quantize(&Tensor::randn(0f32, 1.0, (v, d), &dev).unwrap(), GgmlDType::Q8_0)
                .unwrap(),
        );
        let h = Tensor::randn(0f32, 1.0, (n, d), &dev).unwrap();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 11) % v as u32).collect();
        let whole = target_logprobs_in_chunks(
            &h,
            &QMatMul::Tensor(q.dequantize(&dev).unwrap()),
            &targets,
            16,
        )
        .unwrap();
        let blocks = target_logprobs_in_chunks(&h, &QMatMul::QTensor(q), &targets, 16).unwrap();
        assert_eq!(whole.to_vec1::<f32>().unwrap(), blocks.to_vec1::<f32>().unwrap());
    }
}
