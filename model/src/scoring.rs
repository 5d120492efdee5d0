//! Log-likelihood of continuations given contexts, as lm-evaluation-harness's `loglikelihood`
//! needs (sum of log-probabilities, token count, whether greedy decoding would produce it), and a
//! differentiable per-sequence version for DPO.

use candle_core::{DType, IndexOp, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::transformer::Model;
use crate::{Error, Result};

/// The score of one continuation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogLikelihood {
    /// Sum of the log-probabilities of the continuation tokens.
    pub logprob: f64,
    /// Number of continuation tokens.
    pub tokens: usize,
    /// Whether every continuation token is the argmax at its position.
    pub is_greedy: bool,
}

/// Scores `(context, continuation)` id pairs, batching up to `batch_tokens` padded tokens per
/// forward pass. Inputs longer than the context window lose context tokens from the left.
pub fn score_tokens(
    model: &Model,
    requests: &[(Vec<u32>, Vec<u32>)],
    batch_tokens: usize,
) -> Result<Vec<LogLikelihood>> {
    let max_len = model.config().max_position_embeddings.min(32_768);
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(requests[i].0.len() + requests[i].1.len()));
    let mut out = vec![None; requests.len()];
    let mut start = 0;
    while start < order.len() {
        // Longest first: the first row of a batch sets its padded width.
        let (ctx, cont) = &requests[order[start]];
        let width = (ctx.len() + cont.len() - 1).min(max_len);
        let rows = (batch_tokens / width.max(1)).max(1).min(order.len() - start);
        let batch = &order[start..start + rows];
        for (i, ll) in batch.iter().zip(score_batch(model, requests, batch, width)?) {
            out[*i] = Some(ll);
        }
        start += rows;
    }
    Ok(out.into_iter().map(|x| x.expect("every request scored")).collect())
}

fn score_batch(
    model: &Model,
    requests: &[(Vec<u32>, Vec<u32>)],
    batch: &[usize],
    width: usize,
) -> Result<Vec<LogLikelihood>> {
    let mut ids = Vec::with_capacity(batch.len() * width);
    let mut spans = vec![]; // (first predicting position, targets)
    for &i in batch {
        let (ctx, cont) = &requests[i];
        if ctx.is_empty() || cont.is_empty() {
            return Err(Error::InvalidRequest(
                "scoring needs a non-empty context and continuation".into(),
            ));
        }
        let mut full: Vec<u32> = ctx.iter().chain(cont).copied().collect();
        full.pop();
        let cut = full.len().saturating_sub(width);
        let full = &full[cut..];
        let first = full.len() + 1 - cont.len();
        spans.push((first - 1, cont.clone()));
        ids.extend_from_slice(full);
        ids.extend(std::iter::repeat_n(0, width - full.len()));
    }
    let input = Tensor::from_vec(ids, (batch.len(), width), model.device())?;
    let hidden = model.forward_hidden(&input, None, None)?;
    let picked: Vec<Tensor> = spans
        .iter()
        .enumerate()
        .map(|(b, (p, t))| hidden.i((b, *p..*p + t.len())))
        .collect::<candle_core::Result<_>>()?;
    let logp = candle_nn::ops::log_softmax(&model.lm_head(&Tensor::cat(&picked, 0)?)?, D::Minus1)?;
    let argmax: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
    let targets: Vec<u32> = spans.iter().flat_map(|(_, t)| t.iter().copied()).collect();
    let tgt = Tensor::new(targets.as_slice(), model.device())?.unsqueeze(1)?;
    let lp: Vec<f32> = logp.gather(&tgt, 1)?.squeeze(1)?.to_vec1()?;
    let mut res = vec![];
    let mut k = 0;
    for (_, t) in &spans {
        let n = t.len();
        res.push(LogLikelihood {
            logprob: lp[k..k + n].iter().map(|&x| x as f64).sum(),
            tokens: n,
            is_greedy: argmax[k..k + n] == t[..],
        });
        k += n;
    }
    Ok(res)
}

/// Differentiable sum of `log p(input_ids[t+1] | ..t)` over positions where `loss_mask[t+1]` is 1,
/// per row: `input_ids` `(b, t)` u32, `loss_mask` `(b, t)` f32; returns `(b,)`. What DPO needs.
pub fn sequence_logprobs(model: &Model, input_ids: &Tensor, loss_mask: &Tensor) -> Result<Tensor> {
    let t = input_ids.dim(1)?;
    let logits = model.forward(&input_ids.narrow(1, 0, t - 1)?, None, None)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let targets = input_ids.narrow(1, 1, t - 1)?.to_dtype(DType::U32)?.unsqueeze(2)?;
    let tok = logp.gather(&targets.contiguous()?, 2)?.squeeze(2)?;
    let mask = loss_mask.narrow(1, 1, t - 1)?.to_dtype(DType::F32)?;
    Ok((tok * mask)?.sum(1)?)
}
