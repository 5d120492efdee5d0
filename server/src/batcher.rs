//! Continuous batching: one model thread owns the model and decodes every active request in one
//! batch, one token per sequence per step. Requests arriving mid-decode join at the next step
//! boundary instead of waiting for the batch to finish.
//!
//! Every request owns its KV cache (Orca's iteration-level scheduling, Yu et al. 2022,
//! <https://www.usenix.org/conference/osdi22/presentation/yu>): a new request is prefilled alone
//! and its first token sent at once, then it joins the running batch; a decoding step runs
//! [`medalign_model::Model::forward_rows`] over the live rows (one pass over the weights for
//! all of them, attention per row); a finished or cancelled row leaves immediately. Nothing is
//! padded or recomputed, so a greedy answer under load equals the same answer alone.

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
    cache: KvCache,
    /// The token to feed at the next step.
    next: u32,
    done: bool,
}

impl Row {
    fn new(req: GenRequest, cache: KvCache) -> Row {
        Row {
            history: req.prompt.clone(),
            sampler: Sampler::new(&req.sampling, 0),
            req,
            generated: Vec::new(),
            emitted: 0,
            text: String::new(),
            cache,
            next: 0,
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

    /// Picks the next token from `logits`, sends the text that became final, and marks the row
    /// done when it ended (EOS, stop string, length, cancelled).
    fn advance(&mut self, mut logits: Vec<f32>, lm: &LanguageModel, eos: &[u32], max_context: usize, metrics: &Metrics) {
        let tok = self.sampler.sample(&mut logits, &self.history);
        self.history.push(tok);
        self.next = tok;
        if self.generated.is_empty() {
            metrics.first_token(self.req.queued.elapsed());
        }
        if eos.contains(&tok) {
            return self.finish(FinishReason::Eos, metrics);
        }
        self.generated.push(tok);
        self.text = match lm.tokenizer.decode(&self.generated, true) {
            Ok(t) => t,
            Err(e) => {
                let _ = self.req.events.send(GenEvent::Error(e.to_string()));
                self.done = true;
                return;
            }
        };
        if let Some(cut) = self.req.stop.iter().filter_map(|s| self.text.find(s.as_str())).min() {
            self.text.truncate(cut);
            self.finish(FinishReason::Stop, metrics);
        } else if self.generated.len() >= self.req.max_tokens || self.history.len() >= max_context {
            self.finish(FinishReason::Length, metrics);
        } else {
            let end = stable_prefix(&self.text, &self.req.stop);
            if end > self.emitted && self.text.is_char_boundary(end) {
                let delta = self.text[self.emitted..end].to_string();
                self.emitted = end;
                if self.req.events.send(GenEvent::Text(delta)).is_err() {
                    self.done = true;
                    metrics.request_cancelled();
                }
            }
        }
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
    let mut open = true;
    loop {
        let mut arrived = Vec::new();
        if rows.is_empty() {
            if !open {
                return;
            }
            match queue.recv_timeout(Duration::from_millis(200)) {
                Ok(r) => arrived.push(r),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        while open && rows.len() + arrived.len() < limits.max_batch {
            match queue.try_recv() {
                Ok(r) => arrived.push(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        metrics.dequeued(arrived.len());
        for r in rows.iter_mut().filter(|r| r.req.events.is_closed()) {
            r.done = true;
            metrics.request_cancelled();
        }
        rows.retain(|r| !r.done);
        for req in arrived {
            if let Some(row) = join(&lm, req, &eos, limits, &metrics) {
                rows.push(row);
            }
        }
        if rows.is_empty() {
            continue;
        }
        let started = Instant::now();
        let tokens: Vec<u32> = rows.iter().map(|r| r.next).collect();
        let mut caches: Vec<&mut KvCache> = rows.iter_mut().map(|r| &mut r.cache).collect();
        let logits = lm.model.forward_rows(&tokens, &mut caches).and_then(|l| Ok(l.to_vec2::<f32>()?));
        match logits {
            Ok(all) => {
                for (row, l) in rows.iter_mut().zip(all) {
                    row.advance(l, &lm, &eos, limits.max_context, &metrics);
                }
            }
            Err(e) => fail_all(&mut rows, &e.to_string(), &metrics),
        }
        let produced = rows.len();
        rows.retain(|r| !r.done);
        metrics.decode_step(produced, started.elapsed(), rows.len());
    }
}

/// Prefills a new request alone and sends its first token; the row to decode, if it goes on.
fn join(lm: &LanguageModel, req: GenRequest, eos: &[u32], limits: BatchLimits, metrics: &Metrics) -> Option<Row> {
    if req.events.is_closed() {
        metrics.request_cancelled();
        return None;
    }
    let started = Instant::now();
    let result = (|| -> medalign_model::Result<(KvCache, Vec<f32>)> {
        let mut cache = KvCache::new(lm.config());
        let input = Tensor::new(req.prompt.as_slice(), lm.model.device())?.unsqueeze(0)?;
        let logits = lm.model.forward_last(&input, Some(&mut cache), None)?.squeeze(0)?.to_vec1()?;
        Ok((cache, logits))
    })();
    match result {
        Ok((cache, logits)) => {
            metrics.prefill(req.prompt.len(), started.elapsed());
            let mut row = Row::new(req, cache);
            row.advance(logits, lm, eos, limits.max_context, metrics);
            (!row.done).then_some(row)
        }
        Err(e) => {
            let _ = req.events.send(GenEvent::Error(e.to_string()));
            metrics.request_cancelled();
            None
        }
    }
}

fn fail_all(rows: &mut [Row], e: &str, metrics: &Metrics) {
    for r in rows.iter_mut().filter(|r| !r.done) {
        let _ = r.req.events.send(GenEvent::Error(e.to_string()));
        r.done = true;
        metrics.request_cancelled();
    }
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
