//! AdamW (Loshchilov & Hutter 2019, <https://arxiv.org/abs/1711.05101>) as PyTorch computes it:
//! decoupled weight decay, bias-corrected moments; the learning-rate schedules of `transformers`
//! (linear warmup, then cosine or linear decay); clipping by the global gradient norm. The state
//! lives on the host as plain `f32` vectors, so a checkpoint stores it exactly.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

/// The decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Half a cosine from the peak down to zero.
    Cosine,
    /// A straight line down to zero.
    Linear,
    /// The peak rate throughout.
    Constant,
}

/// The learning rate of optimizer step `step` (0-based) out of `total`, as `transformers`'
/// `get_{cosine,linear,constant}_schedule_with_warmup`: `step / warmup` during warmup.
pub fn learning_rate(
    peak: f64,
    schedule: Schedule,
    step: usize,
    warmup: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * match schedule {
        Schedule::Cosine => (0.5 * (1.0 + (PI * progress).cos())).max(0.0),
        Schedule::Linear => (1.0 - progress).max(0.0),
        Schedule::Constant => 1.0,
    }
}

/// AdamW hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    /// `beta1`, `beta2`.
    pub betas: (f64, f64),
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled decay, multiplied by the learning rate.
    pub weight_decay: f64,
}

/// The moments of every parameter and the step count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdamW {
    /// Steps taken.
    pub step: u64,
    /// First moments, one vector per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

impl AdamW {
    /// Zero state for parameters of the given sizes.
    pub fn new(sizes: &[usize]) -> Self {
        Self {
            step: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// One update of `params` with `grads` at learning rate `lr` (torch.optim.AdamW, not amsgrad).
    pub fn update(
        &mut self,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        lr: f64,
        hp: &AdamWParams,
    ) {
        self.step += 1;
        let (b1, b2) = hp.betas;
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        let step_size = (lr / c1) as f32;
        let (decay, c2s) = ((1.0 - lr * hp.weight_decay) as f32, c2.sqrt() as f32);
        let (b1f, b2f, eps) = (b1 as f32, b2 as f32, hp.eps as f32);
        for (((p, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            for i in 0..p.len() {
                p[i] *= decay;
                m[i] = b1f * m[i] + (1.0 - b1f) * g[i];
                v[i] = b2f * v[i] + (1.0 - b2f) * g[i] * g[i];
                p[i] -= step_size * m[i] / (v[i].sqrt() / c2s + eps);
            }
        }
    }
}

/// The global L2 norm of `grads`; when it exceeds `max_norm` (> 0), scales them down to it as
/// `torch.nn.utils.clip_grad_norm_` does. Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let norm = grads.iter().flatten().map(|&g| (g as f64) * (g as f64)).sum::<f64>().sqrt();
    if max_norm > 0.0 {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            grads.iter_mut().flatten().for_each(|g| *g *= coef as f32);
        }
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_reaches_zero() {
        assert_eq!(learning_rate(1.0, Schedule::Cosine, 0, 2, 10), 0.0);
        assert_eq!(learning_rate(1.0, Schedule::Cosine, 1, 2, 10), 0.5);
        assert_eq!(learning_rate(1.0, Schedule::Cosine, 2, 2, 10), 1.0);
        assert!((learning_rate(1.0, Schedule::Cosine, 6, 2, 10) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, Schedule::Linear, 10, 2, 10).abs() < 1e-12);
    }

    #[test]
    fn first_adamw_step_moves_by_lr_times_sign() {
        let mut p = vec![vec![1.0f32, -1.0]];
        let mut opt = AdamW::new(&[2]);
        let hp = AdamWParams { betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.0 };
        opt.update(&mut p, &[vec![0.3, -2.0]], 0.1, &hp);
        assert!((p[0][0] - 0.9).abs() < 1e-6 && (p[0][1] + 0.9).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let mut g = vec![vec![3.0f32], vec![4.0]];
        assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
        assert!((g[0][0] - 0.6).abs() < 1e-5 && (g[1][0] - 0.8).abs() < 1e-5);
    }
}
