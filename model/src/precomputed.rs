//! The result of a custom op computed before candle runs the op.
//!
//! The differentiable ops of this crate (frozen products, fused LoRA, attention, RoPE, the fused
//! CE, checkpoints) compute their forward with tensor ops or kernels of their own, then attach a
//! backward through `apply_op*`, whose `cpu_fwd` only has to hand that result to candle. This
//! holds it until then.

use std::sync::Mutex;

use candle_core::{CpuStorage, Shape, Tensor};

/// An op's f32 result, handed over once.
pub(crate) struct Precomputed {
    op: &'static str,
    out: Mutex<Option<(Vec<f32>, Shape)>>,
}

impl Precomputed {
    /// The result of op `op` as an f32 vector in row-major order.
    pub(crate) fn new(op: &'static str, values: Vec<f32>, shape: impl Into<Shape>) -> Self {
        Self { op, out: Mutex::new(Some((values, shape.into()))) }
    }

    /// The result of op `op` as a tensor (copied out of it).
    pub(crate) fn of_tensor(op: &'static str, t: &Tensor) -> candle_core::Result<Self> {
        Ok(Self::new(op, t.flatten_all()?.to_vec1::<f32>()?, t.shape().clone()))
    }

    /// What `cpu_fwd` returns: the result, the first time it is asked for.
    pub(crate) fn take(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let (values, shape) = self
            .out
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{}: poisoned", self.op)))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: forward run twice", self.op)))?;
        Ok((CpuStorage::F32(values), shape))
    }
}
