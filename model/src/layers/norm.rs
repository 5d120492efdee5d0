//! RMSNorm (Zhang & Sennrich 2019, <https://arxiv.org/abs/1910.07467>).

use candle_core::{Module, Tensor};

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
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
        }
    }
}
