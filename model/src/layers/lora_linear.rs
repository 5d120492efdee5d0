//! A LoRA projection `x W^T + s (x A^T) B^T` over a frozen `W` as one autograd node.
//!
//! Written as tensor ops it is five nodes (the frozen product, two rank-r products, the scale
//! and the sum), and candle's backward gives each node's every input a zeroed gradient buffer
//! plus an addition: per projection four output-size tensors kept for backward and a dozen
//! full-width memsets and adds per step. Here the forward keeps only the sum and the rank-r
//! activations `s x A^T`; the backward returns `g W + s (g B) A`, `s (g B)^T x` and
//! `g^T (s x A^T)` directly. The frozen product and its input gradient are those of
//! [`super::frozen_matmul`] (bfloat16 inside a [`super::bf16_products`] scope).

use candle_core::quantized::QMatMul;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::bf16_gemm::{self, PackedB};
use super::frozen_matmul::{bf16_product, bf16_rows, product, weight_f32};
use crate::lora::LoraLayer;
use crate::precomputed::Precomputed;

struct LoraLinear {
    weight: QMatMul,
    scaling: f64,
    /// The frozen product ran in bfloat16, so its input gradient does too.
    bf16: bool,
    /// The forward's result, handed to candle by `cpu_fwd`.
    out: Precomputed,
    /// `s x A^T`, `(n, r)`: what `B`'s gradient needs.
    u: Tensor,
}

impl CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "lora-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.take()
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (a, b) = (a.detach(), b.detach());
        let (out_dim, in_dim) = (b.dim(0)?, a.dim(1)?);
        let x2 = x.detach().reshape(((), in_dim))?;
        let g = grad.detach().contiguous()?.reshape(((), out_dim))?;
        let gb = g.matmul(&b)?;
        let w = weight_f32(&self.weight, x.device())?;
        let base = if self.bf16 {
            bf16_gemm::product(&g, &PackedB::of_plain(&w)?)?
        } else {
            g.matmul(&w)?
        };
        let gx = (base + (gb.matmul(&a)? * self.scaling)?)?.reshape(x.shape())?;
        let ga = (gb.t()?.matmul(&x2)? * self.scaling)?;
        let gbv = g.t()?.matmul(&self.u)?;
        Ok((Some(gx), Some(ga), Some(gbv)))
    }
}

/// `x W^T + s (x A^T) B^T` for `x` `(..., in)` on the CPU, differentiable in `x`, `A` and `B`
/// (LoRA without dropout on its input).
pub fn lora_linear(x: &Tensor, weight: &QMatMul, lora: &LoraLayer) -> candle_core::Result<Tensor> {
    // Reference log-probs and evaluation run without gradients: A and B are then constants.
    let (a, b) = if crate::checkpoint::grad_disabled() {
        (lora.a().as_tensor().detach(), lora.b().as_tensor().detach())
    } else {
        (lora.a().as_tensor().clone(), lora.b().as_tensor().clone())
    };
    let in_dim = x.dim(candle_core::D::Minus1)?;
    let x2 = x.detach().reshape(((), in_dim))?;
    let bf16 = bf16_rows(&x2);
    let mut out: Vec<f32> = if bf16 {
        bf16_product(&x2, weight)?
    } else {
        product(&x2, weight, false)?.flatten_all()?.to_vec1()?
    };
    let u = (x2.matmul(&a.detach().t()?)? * lora.scaling())?;
    bf16_gemm::with_f32(&u.matmul(&b.detach().t()?)?, |update| {
        out.iter_mut().zip(update).for_each(|(o, d)| *o += d);
        Ok(())
    })?;
    let mut shape = x.dims().to_vec();
    *shape.last_mut().expect("rank >= 1") = b.dim(0)?;
    if !(x.track_op() || a.track_op() || b.track_op()) {
        return Tensor::from_vec(out, shape, x.device());
    }
    let op = LoraLinear {
        weight: weight.clone(),
        scaling: lora.scaling(),
        bf16,
        out: Precomputed::new("lora-linear", out, shape),
        u,
    };
    x.apply_op3(&a, &b, op)
}

/// Whether [`lora_linear`] computes `x`'s projection: f32 on the CPU, no dropout in training.
pub fn fits(x: &Tensor, lora: &LoraLayer, training: bool) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !(training && lora.dropout() > 0.0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Var};

    use super::*;

    /// The fused node's value and gradients equal those of the five-op composition (whose frozen
    /// product is `frozen_matmul`'s).
    fn check(weight: QMatMul, rows: usize) {
        let dev = Device::Cpu;
        let w = weight_f32(&weight, &dev).unwrap();
        let (out_dim, in_dim) = w.dims2().unwrap();
        let x =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, rows, in_dim), &dev).unwrap()).unwrap();
        let a = Var::from_tensor(&Tensor::randn(0f32, 0.3, (4, in_dim), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, (out_dim, 4), &dev).unwrap()).unwrap();
        let r = Tensor::randn(0f32, 1.0, (2, rows, out_dim), &dev).unwrap();
        let lora = LoraLayer::new(a.clone(), b.clone(), 1.5, 0.0);
        let fused = lora_linear(x.as_tensor(), &weight, &lora).unwrap();
        let xs = x.as_tensor().reshape(((), in_dim)).unwrap();
        let plain = (super::super::frozen_matmul(&xs, &weight).unwrap()
            + (xs.matmul(&a.as_tensor().t().unwrap()).unwrap() * 1.5)
                .unwrap()
                .matmul(&b.as_tensor().t().unwrap())
                .unwrap())
        .unwrap();
        let plain = plain.reshape((2, rows, out_dim)).unwrap();
        let close = |p: &Tensor, q: &Tensor, what: &str| {
            let d = (p - q).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let s = q.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d <= 1e-5 * s.max(1.0), "{what}: {d} of {s}");
        };
        close(&fused, &plain, "value");
        let gf = (fused * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gp = (plain * &r).unwrap().sum_all().unwrap().backward().unwrap();
        for (v, what) in [(&x, "x"), (&a, "A"), (&b, "B")] {
            close(gf.get(v.as_tensor()).unwrap(), gp.get(v.as_tensor()).unwrap(), what);
        }
    }

    #[test]
    fn value_and_gradients_equal_the_composed_ops() {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.2, (24, 64), &dev).unwrap();
        check(QMatMul::Tensor(w.clone()), 5);
        check(QMatMul::QTensor(Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap())), 5);
        // 60 rows: the frozen product and its input gradient in bfloat16 where the CPU has it.
        crate::layers::bf16_products(true, || check(QMatMul::Tensor(w.clone()), 30));
    }

    #[test]
    fn without_gradients_it_is_the_plain_value() {
        let dev = Device::Cpu;
        let w = QMatMul::Tensor(Tensor::randn(0f32, 0.2, (8, 32), &dev).unwrap());
        let a = Var::from_tensor(&Tensor::randn(0f32, 0.3, (2, 32), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, (8, 2), &dev).unwrap()).unwrap();
        let lora = LoraLayer::new(a, b, 2.0, 0.0);
        let x = Tensor::randn(0f32, 1.0, (3, 32), &dev).unwrap();
        let y = crate::checkpoint::no_grad(|| lora_linear(&x, &w, &lora)).unwrap();
        assert!(!y.track_op());
    }
}
