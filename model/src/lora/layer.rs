//! One LoRA update `scaling * B A x` with trainable `A (r, in)` and `B (out, r)`.

use candle_core::{Tensor, Var};

use crate::Result;

/// The trainable low-rank pair attached to one projection.
#[derive(Debug, Clone)]
pub struct LoraLayer {
    a: Var,
    b: Var,
    scaling: f64,
    dropout: f32,
}

impl LoraLayer {
    /// Wraps existing variables: `a` is `(r, in)`, `b` is `(out, r)`.
    pub fn new(a: Var, b: Var, scaling: f64, dropout: f32) -> Self {
        Self { a, b, scaling, dropout }
    }

    /// The down-projection `A`.
    pub fn a(&self) -> &Var {
        &self.a
    }

    /// The up-projection `B`.
    pub fn b(&self) -> &Var {
        &self.b
    }

    /// Dropout on the update's input in training.
    pub fn dropout(&self) -> f32 {
        self.dropout
    }

    /// The factor applied to `B A x`.
    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    /// `scaling * B A`, the update to the weight, `(out, in)`.
    pub fn delta_weight(&self) -> Result<Tensor> {
        Ok((self.b.as_tensor().matmul(self.a.as_tensor())? * self.scaling)?)
    }

    /// `B (scaling * A dropout(x))` for `x` of shape `(..., in)`.
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let x = if training && self.dropout > 0.0 {
            candle_nn::ops::dropout(x, self.dropout)?
        } else {
            x.clone()
        };
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let flat = x.reshape(((), in_dim))?;
        // Scale the rank-r activations, not the full-width output: one fewer (tokens, out)
        // tensor kept alive for backward per projection.
        let (a, b) = if crate::checkpoint::grad_disabled() {
            (self.a.as_tensor().detach(), self.b.as_tensor().detach())
        } else {
            (self.a.as_tensor().clone(), self.b.as_tensor().clone())
        };
        let h = (flat.matmul(&a.t()?)? * self.scaling)?;
        let y = h.matmul(&b.t()?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = y.dim(1)?;
        Ok(y.reshape(out_dims)?)
    }
}
