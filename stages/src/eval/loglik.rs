//! Log-likelihood scoring of `(context, continuation)` token pairs, as lm-evaluation-harness's
//! `loglikelihood` requests: sum of the continuation's log-probabilities and whether greedy decoding
//! would produce it.
//!
//! Multiple-choice prompts share one context among all their choices, and most choices (option
//! letters, yes/no/maybe) are one token. Such a group costs one forward pass over the context: the
//! last position's distribution scores every choice. The harness's Hugging Face backend does the
//! same ("one-token continuation" grouping). Other requests go to [`medalign_model::score_tokens`].

use std::collections::HashMap;

use candle_core::{IndexOp, Tensor, D};
use medalign_model::{score_tokens, LogLikelihood, Model};

/// One request: context ids and continuation ids, both non-empty.
pub type Request = (Vec<u32>, Vec<u32>);

/// Scores every request, batching up to `batch_tokens` padded tokens per forward pass. Contexts
/// longer than the model's window lose tokens from the left, as in the harness.
pub fn score(
    model: &Model,
    requests: &[Request],
    batch_tokens: usize,
) -> medalign_model::Result<Vec<LogLikelihood>> {
    let mut groups: HashMap<&[u32], Vec<usize>> = HashMap::new();
    for (i, (ctx, _)) in requests.iter().enumerate() {
        groups.entry(ctx.as_slice()).or_default().push(i);
    }
    let mut single: Vec<(&[u32], Vec<usize>)> = Vec::new();
    let mut rest: Vec<usize> = Vec::new();
    for (ctx, members) in groups {
        if !ctx.is_empty() && members.iter().all(|&i| requests[i].1.len() == 1) {
            single.push((ctx, members));
        } else {
            rest.extend(members);
        }
    }
    let mut out: Vec<Option<LogLikelihood>> = vec![None; requests.len()];
    score_single(model, requests, &mut single, batch_tokens, &mut out)?;
    if !rest.is_empty() {
        rest.sort_unstable();
        let reqs: Vec<Request> = rest.iter().map(|&i| requests[i].clone()).collect();
        for (i, ll) in rest.iter().zip(score_tokens(model, &reqs, batch_tokens)?) {
            out[*i] = Some(ll);
        }
    }
    Ok(out.into_iter().map(|x| x.expect("every request scored")).collect())
}

/// One forward pass per distinct context whose continuations are all single tokens.
fn score_single(
    model: &Model,
    requests: &[Request],
    groups: &mut [(&[u32], Vec<usize>)],
    batch_tokens: usize,
    out: &mut [Option<LogLikelihood>],
) -> medalign_model::Result<()> {
    let max_len = model.config().max_position_embeddings.min(32_768);
    let window = |ctx: &[u32]| ctx.len().min(max_len);
    // Longest first, so the first row of a batch sets its padded width; ties by content for determinism.
    groups.sort_by(|a, b| window(b.0).cmp(&window(a.0)).then_with(|| a.0.cmp(b.0)));
    let mut start = 0;
    while start < groups.len() {
        let width = window(groups[start].0);
        let rows = (batch_tokens / width.max(1)).max(1).min(groups.len() - start);
        let batch = &groups[start..start + rows];
        let mut ids = Vec::with_capacity(rows * width);
        let mut last = Vec::with_capacity(rows);
        for (ctx, _) in batch {
            let kept = &ctx[ctx.len() - window(ctx)..];
            ids.extend_from_slice(kept);
            ids.extend(std::iter::repeat_n(0, width - kept.len()));
            last.push(kept.len() - 1);
        }
        let input = Tensor::from_vec(ids, (rows, width), model.device())?;
        let hidden = model.forward_hidden(&input, None, None)?;
        let picked: Vec<Tensor> = last
            .iter()
            .enumerate()
            .map(|(b, &p)| hidden.i((b, p..p + 1)))
            .collect::<candle_core::Result<_>>()?;
        let logits = model.lm_head(&Tensor::cat(&picked, 0)?)?;
        let logp =
            candle_nn::ops::log_softmax(&logits.to_dtype(candle_core::DType::F32)?, D::Minus1)?;
        let argmax: Vec<u32> = logp.argmax(D::Minus1)?.to_vec1()?;
        let table: Vec<Vec<f32>> = logp.to_vec2()?;
        for (row, (_, members)) in batch.iter().enumerate() {
            for &i in members {
                let tok = requests[i].1[0];
                let lp = *table[row].get(tok as usize).ok_or_else(|| {
                    medalign_model::Error::InvalidRequest(format!(
                        "token id {tok} is outside the vocabulary"
                    ))
                })?;
                out[i] = Some(LogLikelihood {
                    logprob: lp as f64,
                    tokens: 1,
                    is_greedy: argmax[row] == tok,
                });
            }
        }
        start += rows;
    }
    Ok(())
}

/// The harness's `acc` and `acc_norm` predictions from the choices' log-likelihoods: the argmax
/// of the sums, and the argmax of the sums divided by each choice's length in characters (first
/// index wins ties, as `numpy.argmax`).
pub fn predictions(lls: &[f64], choices: &[String]) -> (usize, usize) {
    let argmax = |v: &mut dyn Iterator<Item = f64>| {
        let mut best = (0, f64::NEG_INFINITY);
        for (i, x) in v.enumerate() {
            if x > best.1 {
                best = (i, x);
            }
        }
        best.0
    };
    let acc = argmax(&mut lls.iter().copied());
    let norm =
        argmax(&mut lls.iter().zip(choices).map(|(l, c)| l / c.chars().count().max(1) as f64));
    (acc, norm)
}
