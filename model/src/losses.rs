//! Training objectives over the model's logits, differentiable through LoRA variables: masked
//! next-token cross-entropy (SFT) and the DPO loss (Rafailov et al. 2023,
//! <https://arxiv.org/abs/2305.18290>).

use candle_core::{DType, Tensor, D};

use crate::transformer::Model;
use crate::Result;

/// Mean next-token negative log-likelihood of `input_ids` `(b, t)` over the positions where
/// `loss_mask` `(b, t)` is 1 (the mask marks target tokens, e.g. the assistant's answer).
pub fn causal_lm_loss(model: &Model, input_ids: &Tensor, loss_mask: &Tensor) -> Result<Tensor> {
    let t = input_ids.dim(1)?;
    let logits = model.forward(&input_ids.narrow(1, 0, t - 1)?, None, None)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets =
        input_ids.narrow(1, 1, t - 1)?.to_dtype(DType::U32)?.unsqueeze(2)?.contiguous()?;
    let tok = logp.gather(&targets, 2)?.squeeze(2)?;
    let mask = loss_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?;
    let count = mask.sum_all()?.maximum(1.0)?;
    Ok((tok * mask)?.sum_all()?.neg()?.broadcast_div(&count)?)
}

/// DPO: `-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`, averaged over the batch; the
/// inputs are per-sequence summed log-probabilities `(b,)` (see [`crate::sequence_logprobs`]).
pub fn dpo_loss(
    policy_chosen: &Tensor,
    policy_rejected: &Tensor,
    reference_chosen: &Tensor,
    reference_rejected: &Tensor,
    beta: f64,
) -> Result<Tensor> {
    let margin = ((policy_chosen - reference_chosen)? - (policy_rejected - reference_rejected)?)?;
    let z = (margin * beta)?;
    // -log sigmoid(z) = softplus(-z) = max(-z, 0) + log(1 + exp(-|z|)), stable for any z.
    let softplus = (z.neg()?.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    Ok(softplus.mean_all()?)
}
