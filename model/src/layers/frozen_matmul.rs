//! `x @ W^T` for a frozen `W` whose backward returns only the input gradient.
//!
//! Candle's matmul backward always computes (and keeps) the weight gradient, even for a tensor
//! that is not trained; with LoRA that is almost a full backward for nothing. Quantized matmuls
//! have no backward at all. This op computes the product outside the graph, then attaches a
//! backward that only propagates `grad @ W` to the input, dequantizing `W` when it is quantized
//! (which is what QLoRA needs).

use std::cell::Cell;

use candle_core::quantized::QMatMul;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Shape, Tensor};

use super::bf16_gemm::{self, PackedB};
use crate::precomputed::Precomputed;

struct FrozenMatmul {
    weight: QMatMul,
    out: Precomputed,
    /// The forward ran in bfloat16, so the backward does too.
    bf16: bool,
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
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
        let w = weight_f32(&self.weight, arg.device())?;
        let (out_dim, in_dim) = w.dims2()?;
        let lead: Vec<usize> = grad.dims()[..grad.rank() - 1].to_vec();
        let g = grad.reshape(((), out_dim))?;
        let g = if self.bf16 {
            bf16_gemm::product(&g, &PackedB::of_plain(&w)?)?
        } else {
            g.matmul(&w)?
        };
        let mut shape = lead;
        shape.push(in_dim);
        Ok(Some(g.reshape(shape)?))
    }
}

/// The frozen weight in f32, dequantized when quantized.
pub(crate) fn weight_f32(
    weight: &QMatMul,
    device: &candle_core::Device,
) -> candle_core::Result<Tensor> {
    match weight {
        QMatMul::QTensor(q) => q.dequantize(device),
        QMatMul::Tensor(w) | QMatMul::TensorF16(w) => w.to_dtype(DType::F32),
    }
}

/// From this many rows on, a quantized weight is dequantized for one exact f32 GEMM (scoring and
/// training), unless generation asked for the int8 kernels ([`generation_kernels`]). Without the
/// packed AVX-512 kernels, the stored-layout int8 kernels beat dequantizing (a full f32 copy of
/// the weight) only for a few dozen rows, so generation uses the same cut-over there. Measured with
/// the stored-layout kernels on SmolLM2 Q4_1 (`bench generate --prompt-tokens N`, int8 vs GEMM):
/// 16 rows 370 vs 190 tok/s, 32 rows 370 vs 290, 48 rows about even, 96 rows 330 vs 480.
const GEMM_ROWS: usize = 48;

thread_local! {
    static GENERATION: Cell<bool> = const { Cell::new(false) };
}

/// Puts a thread-local flag back when its scope ends, even on panic.
pub(super) struct Restore(pub(super) &'static std::thread::LocalKey<Cell<bool>>, pub(super) bool);

impl Drop for Restore {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

/// Runs `f` with quantized products on the int8 kernels whatever their row count, where the
/// packed kernels make that the faster choice: what generation (prefill and decoding) wants, as
/// llama.cpp does. A 64-token prompt of SmolLM2 Q4_1 prefills at 600 tok/s this way against 210
/// through dequantize + GEMM, and a row's logits no longer depend on how many rows share its
/// step. Scoring and training stay on the exact f32 product, which matches `transformers`.
pub fn generation_kernels<R>(f: impl FnOnce() -> R) -> R {
    let _restore = Restore(&GENERATION, GENERATION.replace(true));
    f()
}

fn exact_product(rows: usize) -> bool {
    rows >= GEMM_ROWS && !(GENERATION.get() && super::qpacked::available())
}

/// `x @ W^T` without autograd: quantized kernels for a few rows, f32 (or, in a
/// [`bf16_products`] scope, bfloat16) GEMM for many.
pub(super) fn product(x: &Tensor, weight: &QMatMul, bf16: bool) -> candle_core::Result<Tensor> {
    let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?;
    if bf16 {
        let in_dim = x.dim(candle_core::D::Minus1)?;
        let out = bf16_product(&x.reshape(((), in_dim))?, weight)?;
        let mut shape = x.dims().to_vec();
        *shape.last_mut().expect("rank >= 1") = out.len() / rows.max(1);
        return Tensor::from_vec(out, shape, x.device());
    }
    match weight {
        QMatMul::QTensor(q) if exact_product(rows) && x.device().is_cpu() => {
            let w = q.dequantize(x.device())?;
            let (out_dim, in_dim) = w.dims2()?;
            let mut shape = x.dims().to_vec();
            *shape.last_mut().expect("rank >= 1") = out_dim;
            x.reshape(((), in_dim))?.matmul(&w.t()?)?.reshape(shape)
        }
        QMatMul::QTensor(q) => match super::qmatvec::quantized_matmul(x, q)? {
            Some(y) => Ok(y),
            None => weight.forward(x),
        },
        _ => weight.forward(x),
    }
}

/// `x @ W^T` in bfloat16 for a matrix `x` `(rows, in)`, row-major `(rows, out)`: `W` dequantized
/// (when quantized) and packed for this product.
pub(super) fn bf16_product(x: &Tensor, weight: &QMatMul) -> candle_core::Result<Vec<f32>> {
    let packed = PackedB::of_transposed(&weight_f32(weight, x.device())?)?;
    bf16_gemm::with_f32(x, |xs| Ok(bf16_gemm::matmul(xs, x.dim(0)?, &packed)))
}

/// Whether the frozen product of `x` runs in bfloat16: enough rows, f32 on the CPU, inside a
/// [`super::bf16_products`] scope on a CPU with the kernels.
pub(super) fn bf16_rows(x: &Tensor) -> bool {
    let rows = x.dims().split_last().map_or(0, |(_, lead)| lead.iter().product());
    rows >= GEMM_ROWS && x.device().is_cpu() && x.dtype() == DType::F32 && bf16_gemm::active()
}

/// `x @ W^T` where `W` is frozen: differentiable in `x` only, on CPU; elsewhere, or when `x`
/// carries no gradient, the plain product.
pub fn frozen_matmul(x: &Tensor, weight: &QMatMul) -> candle_core::Result<Tensor> {
    let bf16 = bf16_rows(x);
    let out = product(&x.detach(), weight, bf16)?;
    if !x.track_op() || !x.device().is_cpu() {
        return Ok(out);
    }
    x.apply_op1(FrozenMatmul {
        weight: weight.clone(),
        out: Precomputed::of_tensor("frozen-matmul", &out)?,
        bf16,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::Device;

    use super::*;

    #[test]
    fn many_rows_score_exactly_and_generation_takes_the_int8_kernels_only_inside_its_scope() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (48, 64), &dev).unwrap();
        let q = Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap());
        let weight = QMatMul::QTensor(q.clone());
        let x = Tensor::randn(0f32, 1.0, (GEMM_ROWS + 16, 64), &dev).unwrap();
        let exact = x.matmul(&q.dequantize(&dev).unwrap().t().unwrap()).unwrap();
        let int8 = crate::layers::qmatvec::quantized_matmul(&x, &q).unwrap().unwrap();
        let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(bits(&frozen_matmul(&x, &weight).unwrap()), bits(&exact));
        let generated = generation_kernels(|| frozen_matmul(&x, &weight).unwrap());
        let want = if crate::layers::qpacked::available() { &int8 } else { &exact };
        assert_eq!(bits(&generated), bits(want));
        assert_ne!(bits(&int8), bits(&exact), "8-bit activations round differently");
        // The scope is over: scoring is exact again.
        assert_eq!(bits(&frozen_matmul(&x, &weight).unwrap()), bits(&exact));
    }
}
