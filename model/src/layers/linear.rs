//! A projection `y = x W^T (+ b)` over a frozen, possibly quantized `W`, with an optional LoRA
//! update that can be switched off, merged into `W` and unmerged again.

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Module, Tensor};

use super::{frozen_matmul, lora_linear};
use crate::lora::LoraLayer;
use crate::weights::Weights;
use crate::Result;

/// A linear layer of the transformer (q, k, v, o, gate, up, down or the LM head).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: QMatMul,
    bias: Option<Tensor>,
    in_dim: usize,
    out_dim: usize,
    lora: Option<LoraLayer>,
    lora_enabled: bool,
    /// The weight before `merge_lora`, restored by `unmerge_lora`.
    unmerged: Option<QMatMul>,
    training: bool,
}

impl Linear {
    /// Loads `weight` (and `bias` when the checkpoint has one) of shape `(out_dim, in_dim)`.
    pub fn new(in_dim: usize, out_dim: usize, w: Weights) -> Result<Self> {
        let weight = w.get_matmul((out_dim, in_dim), "weight")?;
        let bias = if w.contains("bias") { Some(w.get(out_dim, "bias")?) } else { None };
        Ok(Self::from_parts(weight, bias, in_dim, out_dim))
    }

    /// Wraps an existing matrix (used for the tied LM head).
    pub fn from_parts(
        weight: QMatMul,
        bias: Option<Tensor>,
        in_dim: usize,
        out_dim: usize,
    ) -> Self {
        Self {
            weight,
            bias,
            in_dim,
            out_dim,
            lora: None,
            lora_enabled: true,
            unmerged: None,
            training: false,
        }
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.in_dim
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// The frozen weight as stored (quantized or f32).
    pub fn weight(&self) -> &QMatMul {
        &self.weight
    }

    /// Replaces the frozen weight (same shape), e.g. by a view of a fused matrix.
    pub(crate) fn set_weight(&mut self, weight: QMatMul) {
        self.weight = weight;
    }

    /// The frozen weight as an f32 tensor `(out_dim, in_dim)`.
    pub fn weight_f32(&self) -> Result<Tensor> {
        Ok(match &self.weight {
            QMatMul::QTensor(q) => q.dequantize(&q.device())?,
            QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.to_dtype(candle_core::DType::F32)?,
        })
    }

    /// The bias, if the checkpoint has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The attached LoRA update, if any.
    pub fn lora(&self) -> Option<&LoraLayer> {
        self.lora.as_ref()
    }

    /// Attaches (or replaces) a LoRA update; a merged one is unmerged first.
    pub fn set_lora(&mut self, lora: Option<LoraLayer>) -> Result<()> {
        self.unmerge_lora()?;
        self.lora = lora;
        Ok(())
    }

    /// Turns the LoRA update on or off without removing it.
    pub fn set_lora_enabled(&mut self, enabled: bool) {
        self.lora_enabled = enabled;
    }

    /// Training mode applies LoRA dropout.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    /// Folds `scaling * B A` into `W` (re-quantizing to the same type when `W` is quantized).
    pub fn merge_lora(&mut self) -> Result<()> {
        let Some(lora) = &self.lora else { return Ok(()) };
        if self.unmerged.is_some() {
            return Ok(());
        }
        let merged = (self.weight_f32()? + lora.delta_weight()?)?;
        let new = match &self.weight {
            QMatMul::QTensor(q) => {
                QMatMul::QTensor(std::sync::Arc::new(QTensor::quantize(&merged, q.dtype())?))
            }
            _ => QMatMul::Tensor(merged),
        };
        self.unmerged = Some(std::mem::replace(&mut self.weight, new));
        Ok(())
    }

    /// Restores the weight saved by `merge_lora`.
    pub fn unmerge_lora(&mut self) -> Result<()> {
        if let Some(w) = self.unmerged.take() {
            self.weight = w;
        }
        Ok(())
    }

    /// Whether the LoRA update is currently folded into the weight.
    pub fn is_merged(&self) -> bool {
        self.unmerged.is_some()
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.contiguous()?;
        let lora = self.lora.as_ref().filter(|_| self.lora_enabled && self.unmerged.is_none());
        let fused = lora.filter(|l| lora_linear::fits(&x, l, self.training));
        let mut y = match fused {
            Some(l) => lora_linear::lora_linear(&x, &self.weight, l)?,
            None => frozen_matmul(&x, &self.weight)?,
        };
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        match lora {
            // With dropout on its input, the update is its own branch.
            Some(l) if fused.is_none() => {
                y + l.forward(&x, self.training).map_err(candle_core::Error::wrap)?
            }
            _ => Ok(y),
        }
    }
}
