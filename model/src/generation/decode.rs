//! The decoding loop: each prompt prefilled alone into its own KV cache, then one token per live
//! sequence per step in one batched pass, each answer's text streamed through [`AnswerText`].

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{AnswerText, Sampler, SamplingParams};
use crate::kv_cache::KvCache;
use crate::tokenizer::Tokenizer;
use crate::transformer::Model;
use crate::{Error, Result};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationConfig {
    /// At most this many new tokens per sequence.
    pub max_new_tokens: usize,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Generation stops when the text contains one of these (it is cut before it).
    pub stop: Vec<String>,
    /// Ids that end a sequence (not part of the text).
    pub eos_ids: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            sampling: SamplingParams::default(),
            stop: vec![],
            eos_ids: vec![],
        }
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-sequence token.
    Eos,
    /// A stop string.
    Stop,
    /// `max_new_tokens` or the context length.
    Length,
}

/// One finished sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text (without EOS, cut before a stop string).
    pub text: String,
    /// The generated ids (without the EOS id).
    pub token_ids: Vec<u32>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Length of its prompt.
    pub prompt_tokens: usize,
}

/// A streaming event: new text of sequence `sequence`.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent<'a> {
    /// Index of the prompt.
    pub sequence: usize,
    /// The token just sampled.
    pub token: u32,
    /// Text that became final with it (may be empty while bytes or a possible stop string are pending).
    pub text: &'a str,
}

struct Sequence {
    history: Vec<u32>,
    answer: AnswerText,
    done: Option<FinishReason>,
    sampler: Sampler,
    budget: usize,
    cache: KvCache,
}

/// Generates a continuation of every prompt in one batch. `on_token` sees each token as it is
/// chosen; returning `false` stops the whole batch.
///
/// Each prompt is prefilled alone into its own KV cache, then every live sequence advances one
/// token per step through [`Model::forward_rows`] (one batched pass over the weights, attention
/// per row) and leaves the batch as soon as it ends. No row is padded, so a sequence gets exactly
/// the logits it gets when generated alone: greedy answers do not depend on the batch.
pub fn generate(
    model: &Model,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    on_token: &mut dyn FnMut(TokenEvent<'_>) -> bool,
) -> Result<Vec<Generation>> {
    if prompts.is_empty() || prompts.iter().any(|p| p.is_empty()) {
        return Err(Error::InvalidRequest("every prompt needs at least one token".into()));
    }
    let dev = model.device();
    let max_ctx = model.config().max_position_embeddings.min(32_768);
    let mut seqs: Vec<Sequence> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Sequence {
            history: p.clone(),
            answer: AnswerText::new(&cfg.stop),
            done: None,
            sampler: Sampler::new(&cfg.sampling, i as u64),
            budget: cfg.max_new_tokens.min(max_ctx.saturating_sub(p.len())),
            cache: model.kv_cache(),
        })
        .collect();
    // Next-token logits of every live sequence, in sequence order.
    let mut logits: Vec<(usize, Vec<f32>)> = Vec::with_capacity(seqs.len());
    for (i, seq) in seqs.iter_mut().enumerate() {
        if seq.budget == 0 {
            seq.done = Some(FinishReason::Length);
            continue;
        }
        let input = Tensor::new(seq.history.as_slice(), dev)?.unsqueeze(0)?;
        let l = model.forward_last(&input, Some(&mut seq.cache), None)?;
        logits.push((i, l.squeeze(0)?.to_vec1()?));
    }
    let mut stopped = false;
    while !logits.is_empty() && !stopped {
        let mut live = Vec::with_capacity(logits.len());
        let mut next = Vec::with_capacity(logits.len());
        for (i, mut row) in logits.drain(..) {
            let seq = &mut seqs[i];
            if stopped {
                break;
            }
            let tok = seq.sampler.sample(&mut row, &seq.history);
            seq.history.push(tok);
            if cfg.eos_ids.contains(&tok) {
                seq.done = Some(FinishReason::Eos);
            } else if seq.answer.push(tokenizer, tok)? {
                seq.done = Some(FinishReason::Stop);
            } else if seq.answer.tokens().len() >= seq.budget {
                seq.done = Some(FinishReason::Length);
            }
            if let Some(reason) = seq.done {
                seq.answer.end(tokenizer, reason)?;
            }
            if !on_token(TokenEvent { sequence: i, token: tok, text: seq.answer.release() }) {
                stopped = true;
            }
            if seq.done.is_none() {
                live.push(i);
                next.push(tok);
            }
        }
        if stopped || live.is_empty() {
            break;
        }
        let mut caches: Vec<&mut KvCache> = seqs
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| live.binary_search(i).is_ok())
            .map(|(_, s)| &mut s.cache)
            .collect();
        let all: Vec<Vec<f32>> = model.forward_rows(&next, &mut caches)?.to_vec2()?;
        logits.extend(live.into_iter().zip(all));
    }
    Ok(seqs
        .into_iter()
        .zip(prompts)
        .map(|(s, p)| {
            let (text, token_ids) = s.answer.into_parts();
            Generation {
                text,
                token_ids,
                finish_reason: s.done.unwrap_or(FinishReason::Length),
                prompt_tokens: p.len(),
            }
        })
        .collect())
}
