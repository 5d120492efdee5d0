//! Continuous batching: one model thread owns the model and decodes every active request in one
//! batch, one token per sequence per step. Requests arriving mid-decode join at the next step
//! boundary instead of waiting for the batch to finish.
//!
//! The model crate's KV cache holds one batch of equal-length rows and cannot splice rows in or
//! out, so joining is done by recomputation (vLLM's "recompute" preemption, Kwon et al. 2023,
//! <https://arxiv.org/abs/2309.06180>): the live sequences' histories (prompt + generated) and
//! the new prompts are left-padded into one fresh prefill. Finished rows ride along as padding
//! until the next rebuild, which also happens once they outnumber the live ones.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use medalign_model::generation::{FinishReason, Sampler};
use medalign_model::{KvCache, LanguageModel, SamplingParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;

/// One request for the model thread.
pub struct GenRequest {
    /// Prompt token ids (non-empty).
    pub prompt: Vec<u32>,
    /// At most this many new tokens.
    pub max_tokens: usize,
    /// How tokens are chosen.
    pub sampling: SamplingParams,
    /// Stop strings: the text is cut before the first one.
    pub stop: Vec<String>,
    /// Where the events go; a closed receiver cancels the request.
    pub events: UnboundedSender<GenEvent>,
    /// When the request was queued (for first-token latency).
    pub queued: Instant,
}

/// What the model thread reports about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum GenEvent {
    /// New final text.
    Text(String),
    /// The sequence ended.
    Done {
        /// Why.
        finish: FinishReason,
        /// Prompt length in tokens.
        prompt_tokens: usize,
        /// Generated tokens (EOS excluded).
        completion_tokens: usize,
    },
    /// The model failed; the request is over.
    Error(String),
}

/// Limits of the batcher.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// The model's context length.
    pub max_context: usize,
}

struct Row {
    req: GenRequest,
    history: Vec<u32>,
    generated: Vec<u32>,
    emitted: usize,
    text: String,
    sampler: Sampler,
    done: bool,
}

impl Row {
    fn new(req: GenRequest) -> Row {
        Row {
            history: req.prompt.clone(),
            sampler: Sampler::new(&req.sampling, 0),
            req,
            generated: Vec::new(),
            emitted: 0,
            text: String::new(),
            done: false,
        }
    }

    fn finish(&mut self, finish: FinishReason, metrics: &Metrics) {
        let end = self.text.len();
        if end > self.emitted {
            let _ = self.req.events.send(GenEvent::Text(self.text[self.emitted..end].to_string()));
            self.emitted = end;
        }
        let _ = self.req.events.send(GenEvent::Done {
            finish,
            prompt_tokens: self.req.prompt.len(),
            completion_tokens: self.generated.len(),
        });
        metrics.request_finished(self.generated.len());
        self.done = true;
    }
}

/// How much of `text` can be shown: not a trailing partial UTF-8 character (decoded as U+FFFD)
/// and not a suffix that could still grow into a stop string.
pub fn stable_prefix(text: &str, stops: &[String]) -> usize {
    let mut end = text.trim_end_matches('\u{FFFD}').len();
    for s in stops {
        for (k, _) in s.char_indices().skip(1) {
            if text[..end].ends_with(&s[..k]) {
                end = end.min(end - k);
            }
        }
    }
    end
}

/// The model thread's loop: returns when every sender of `queue` is gone and nothing is active.
pub fn run_model_thread(lm: LanguageModel, queue: Receiver<GenRequest>, limits: BatchLimits, metrics: Arc<Metrics>) {
    let eos = lm.eos_ids();
    let mut rows: Vec<Row> = Vec::new();
    let mut cache = KvCache::new(lm.config());
    let mut pads: Vec<usize> = Vec::new();
    let mut logits: Option<Vec<Vec<f32>>> = None;
    let mut open = true;
    loop {
        let live = rows.iter().filter(|r| !r.done).count();
        let mut arrived = Vec::new();
        if live == 0 {
            rows.clear();
            if !open {
                return;
            }
            match queue.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => arrived.push(r),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        while open && live + arrived.len() < limits.max_batch {
            match queue.try_recv() {
                Ok(r) => arrived.push(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        metrics.dequeued(arrived.len());
        for r in &mut rows {
            if !r.done && r.req.events.is_closed() {
                r.done = true;
                metrics.request_cancelled();
            }
        }
        let live = rows.iter().filter(|r| !r.done).count();
        let dead = rows.len() - live;
        let too_long = cache.len() + 1 > limits.max_context;
        if !arrived.is_empty() || (dead > 0 && dead >= live) || too_long || logits.is_none() {
            rows.retain(|r| !r.done);
            rows.extend(arrived.into_iter().map(Row::new));
            if rows.is_empty() {
                logits = None;
                continue;
            }
            let started = Instant::now();
            match prefill(&lm, &rows, &mut cache, &eos) {
                Ok((l, p)) => {
                    logits = Some(l);
                    pads = p;
                }
                Err(e) => {
                    fail_all(&mut rows, &e, &metrics);
                    logits = None;
                    continue;
                }
            }
            metrics.prefill(rows.iter().map(|r| r.history.len()).sum(), started.elapsed());
        }
        let Some(step_logits) = logits.take() else { continue };
        let started = Instant::now();
        let mut next = Vec::with_capacity(rows.len());
        let mut produced = 0;
        for (row, mut l) in rows.iter_mut().zip(step_logits) {
            if row.done {
                next.push(eos.first().copied().unwrap_or(0));
                continue;
            }
            let tok = row.sampler.sample(&mut l, &row.history);
            next.push(tok);
            row.history.push(tok);
            produced += 1;
            if row.generated.is_empty() {
                metrics.first_token(row.req.queued.elapsed());
            }
            if eos.contains(&tok) {
                row.finish(FinishReason::Eos, &metrics);
                continue;
            }
            row.generated.push(tok);
            row.text = match lm.tokenizer.decode(&row.generated, true) {
                Ok(t) => t,
                Err(e) => {
                    let _ = row.req.events.send(GenEvent::Error(e.to_string()));
                    row.done = true;
                    continue;
                }
            };
            if let Some(cut) = row.req.stop.iter().filter_map(|s| row.text.find(s.as_str())).min() {
                row.text.truncate(cut);
                row.finish(FinishReason::Stop, &metrics);
            } else if row.generated.len() >= row.req.max_tokens || row.history.len() >= limits.max_context {
                row.finish(FinishReason::Length, &metrics);
            } else {
                let end = stable_prefix(&row.text, &row.req.stop);
                if end > row.emitted && row.text.is_char_boundary(end) {
                    let delta = row.text[row.emitted..end].to_string();
                    row.emitted = end;
                    if row.req.events.send(GenEvent::Text(delta)).is_err() {
                        row.done = true;
                        metrics.request_cancelled();
                    }
                }
            }
        }
        if rows.iter().all(|r| r.done) || cache.len() + 1 > limits.max_context {
            logits = None;
            metrics.decode_step(produced, started.elapsed(), 0);
            continue;
        }
        match decode_step(&lm, &next, &mut cache, &pads) {
            Ok(l) => logits = Some(l),
            Err(e) => fail_all(&mut rows, &e, &metrics),
        }
        metrics.decode_step(produced, started.elapsed(), rows.iter().filter(|r| !r.done).count());
    }
}

fn fail_all(rows: &mut [Row], e: &str, metrics: &Metrics) {
    for r in rows.iter_mut().filter(|r| !r.done) {
        let _ = r.req.events.send(GenEvent::Error(e.to_string()));
        r.done = true;
        metrics.request_cancelled();
    }
}

/// One prefill of every row's history, left-padded; returns the last logits and the pads.
fn prefill(lm: &LanguageModel, rows: &[Row], cache: &mut KvCache, eos: &[u32]) -> Result<(Vec<Vec<f32>>, Vec<usize>), String> {
    let longest = rows.iter().map(|r| r.history.len()).max().unwrap_or(0);
    let pad_id = eos.first().copied().unwrap_or(0);
    let pads: Vec<usize> = rows.iter().map(|r| longest - r.history.len()).collect();
    let ids: Vec<u32> = rows
        .iter()
        .flat_map(|r| std::iter::repeat_n(pad_id, longest - r.history.len()).chain(r.history.iter().copied()))
        .collect();
    cache.reset();
    let dev = lm.model.device();
    let input = Tensor::from_vec(ids, (rows.len(), longest), dev).map_err(|e| e.to_string())?;
    let pad_arg = pads.iter().any(|&p| p > 0).then_some(pads.as_slice());
    let logits = lm.model.forward_last(&input, Some(cache), pad_arg).map_err(|e| e.to_string())?;
    Ok((logits.to_vec2().map_err(|e| e.to_string())?, pads))
}

/// One decode step: the last token of every row.
fn decode_step(lm: &LanguageModel, next: &[u32], cache: &mut KvCache, pads: &[usize]) -> Result<Vec<Vec<f32>>, String> {
    let input = Tensor::from_vec(next.to_vec(), (next.len(), 1), lm.model.device()).map_err(|e| e.to_string())?;
    let pad_arg = pads.iter().any(|&p| p > 0).then_some(pads);
    let logits = lm.model.forward_last(&input, Some(cache), pad_arg).map_err(|e| e.to_string())?;
    logits.to_vec2().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::stable_prefix;

    #[test]
    fn holds_back_possible_stop_strings_and_partial_characters() {
        let stops = vec!["</answer>".to_string()];
        assert_eq!(stable_prefix("hello </ans", &stops), 6);
        assert_eq!(stable_prefix("hello", &stops), 5);
        assert_eq!(stable_prefix("caf\u{FFFD}", &[]), 3);
    }
}
