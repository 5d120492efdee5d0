//! The decoding loop: one left-padded batch, one prefill, then one token per sequence per step
//! through the KV cache, with incremental detokenization for streaming and stop strings.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{Sampler, SamplingParams};
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
        Self { max_new_tokens: 256, sampling: SamplingParams::default(), stop: vec![], eos_ids: vec![] }
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
    generated: Vec<u32>,
    emitted: usize,
    text: String,
    done: Option<FinishReason>,
    sampler: Sampler,
}

/// Generates a continuation of every prompt in one batch. `on_token` sees each token as it is
/// chosen; returning `false` stops the whole batch.
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
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let max_ctx = model.config().max_position_embeddings.min(32_768);
    let budget = cfg.max_new_tokens.min(max_ctx.saturating_sub(longest));
    let pad_id = cfg.eos_ids.first().copied().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
    let rows: Vec<u32> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(pad_id, longest - p.len()).chain(p.iter().copied()))
        .collect();
    let mut seqs: Vec<Sequence> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| Sequence {
            history: p.clone(),
            generated: vec![],
            emitted: 0,
            text: String::new(),
            done: None,
            sampler: Sampler::new(&cfg.sampling, i as u64),
        })
        .collect();
    let mut cache = KvCache::new(model.config());
    let input = Tensor::from_vec(rows, (prompts.len(), longest), dev)?;
    let pad_arg = pads.iter().any(|&p| p > 0).then_some(pads.as_slice());
    let mut logits = model.forward_last(&input, Some(&mut cache), pad_arg)?;
    let mut stopped = false;
    for step in 0..budget {
        let all: Vec<Vec<f32>> = logits.to_vec2()?;
        let mut next = Vec::with_capacity(seqs.len());
        for (i, (seq, mut row)) in seqs.iter_mut().zip(all).enumerate() {
            if seq.done.is_some() || stopped {
                next.push(pad_id);
                continue;
            }
            let tok = seq.sampler.sample(&mut row, &seq.history);
            next.push(tok);
            seq.history.push(tok);
            if cfg.eos_ids.contains(&tok) {
                seq.done = Some(FinishReason::Eos);
            } else {
                seq.generated.push(tok);
                seq.text = tokenizer.decode(&seq.generated, true)?;
                if let Some(cut) = cfg.stop.iter().filter_map(|s| seq.text.find(s.as_str())).min() {
                    seq.text.truncate(cut);
                    seq.done = Some(FinishReason::Stop);
                } else if step + 1 == budget {
                    seq.done = Some(FinishReason::Length);
                }
            }
            let end = if seq.done.is_some() { seq.text.len() } else { stable_prefix(&seq.text, &cfg.stop) };
            let delta = if end > seq.emitted { &seq.text[seq.emitted..end] } else { "" };
            seq.emitted = seq.emitted.max(end);
            if !on_token(TokenEvent { sequence: i, token: tok, text: delta }) {
                stopped = true;
            }
        }
        if stopped || seqs.iter().all(|s| s.done.is_some()) || step + 1 == budget {
            break;
        }
        let input = Tensor::from_vec(next, (seqs.len(), 1), dev)?;
        logits = model.forward_last(&input, Some(&mut cache), pad_arg)?;
    }
    Ok(seqs
        .into_iter()
        .zip(prompts)
        .map(|(s, p)| Generation {
            text: s.text,
            token_ids: s.generated,
            finish_reason: s.done.unwrap_or(FinishReason::Length),
            prompt_tokens: p.len(),
        })
        .collect())
}

/// How much of `text` can be shown: not a trailing partial UTF-8 character (decoded as U+FFFD)
/// and not a suffix that could still grow into a stop string.
fn stable_prefix(text: &str, stops: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
    for s in stops {
        for (k, _) in s.char_indices().skip(1) {
            if text[..end].ends_with(&s[..k]) {
                end = end.min(text[..end].len() - k);
            }
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::stable_prefix;

    #[test]
    fn holds_back_possible_stop_strings_and_partial_bytes() {
        let stops = vec!["</answer>".to_string()];
        assert_eq!(stable_prefix("hello </ans", &stops), 6);
        assert_eq!(stable_prefix("hello", &stops), 5);
        assert_eq!(stable_prefix("caf\u{FFFD}", &[]), 3);
    }
}
