//! The DPO family of preference losses as TRL defines them (`DPOTrainer.dpo_loss`), on
//! per-sequence log-probabilities of the policy and the frozen reference:
//! `z = (pi_chosen - pi_rejected) - (ref_chosen - ref_rejected)`, then
//! sigmoid (Rafailov et al. 2023) `-(1-e) log s(beta z) - e log s(-beta z)` with label smoothing `e`,
//! IPO (Azar et al. 2023) `(z - 1/(2 beta))^2` on length-averaged log-probabilities, and
//! hinge (SLiC) `max(0, 1 - beta z)`.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Which preference loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DpoLossKind {
    /// The original DPO loss.
    Sigmoid,
    /// Identity preference optimization.
    Ipo,
    /// SLiC's hinge.
    Hinge,
}

impl DpoLossKind {
    /// Whether the loss works on log-probabilities averaged over the reply's tokens (TRL's IPO).
    pub fn averages_logprobs(self) -> bool {
        self == Self::Ipo
    }
}

/// DPO hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DpoParams {
    /// Strength of the KL penalty towards the reference (TRL's `beta`).
    pub beta: f64,
    /// The loss.
    pub loss: DpoLossKind,
    /// Label smoothing of the sigmoid loss (cDPO), in [0, 0.5).
    pub label_smoothing: f64,
}

impl Default for DpoParams {
    fn default() -> Self {
        Self { beta: 0.1, loss: DpoLossKind::Sigmoid, label_smoothing: 0.0 }
    }
}

/// `-log sigmoid(x) = softplus(-x)`, stable for any `x`.
fn neg_log_sigmoid(x: &Tensor) -> candle_core::Result<Tensor> {
    x.neg()?.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The per-pair loss `(b,)` from policy and reference log-probabilities `(b,)` each.
pub fn dpo_losses(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    p: &DpoParams,
) -> candle_core::Result<Tensor> {
    let z = ((policy_chosen - policy_rejected)? - (reference_chosen - reference_rejected)?)?;
    match p.loss {
        DpoLossKind::Sigmoid => {
            let bz = (&z * p.beta)?;
            let pos = (neg_log_sigmoid(&bz)? * (1.0 - p.label_smoothing))?;
            if p.label_smoothing == 0.0 {
                return Ok(pos);
            }
            pos + (neg_log_sigmoid(&bz.neg()?)? * p.label_smoothing)?
        }
        DpoLossKind::Ipo => (z - 1.0 / (2.0 * p.beta))?.sqr(),
        DpoLossKind::Hinge => ((z * -p.beta)? + 1.0)?.relu(),
    }
}

/// The implicit rewards TRL logs: `beta (pi - ref)` for chosen and rejected, `(b,)` each.
pub fn rewards(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    beta: f64,
) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
    let c = ((policy_chosen - reference_chosen)? * beta)?.detach().to_vec1()?;
    let r = ((policy_rejected - reference_rejected)? * beta)?.detach().to_vec1()?;
    Ok((c, r))
}
