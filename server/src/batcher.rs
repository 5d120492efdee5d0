//! Continuous batching: one model thread owns the model and decodes every active request in one
//! batch, one token per sequence per step. Requests arriving mid-decode join at the next step
//! boundary instead of waiting for the batch to finish.
//!
//! Every request owns its KV cache (Orca's iteration-level scheduling, Yu et al. 2022,
//! <https://www.usenix.org/conference/osdi22/presentation/yu>). Each step is one
//! [`medalign_model::Model::forward_ragged`] pass over the live requests: the ones decoding
//! bring one token, the ones just arrived bring their prompt (in chunks of at most
//! [`PREFILL_CHUNK`] tokens, within a step's [`PREFILL_BUDGET`]), so arrivals are prefilled
//! together and beside the running decodes instead of one at a time while everything else
//! waits. One pass reads the weights once for all rows; each row attends over its own request's
//! cache. A finished or cancelled row leaves immediately. Nothing is padded or recomputed and a
//! row's arithmetic does not depend on its neighbours, so a greedy answer under load equals the
//! same answer alone.
//! A prompt that starts like an earlier sequence begins from a copy of that sequence's cache
//! ([`PrefixCache`]) and prefills only the rest. The model thread starts by writing that cache's
//! budget of heap once ([`medalign_model::process::prefault_heap`]), so the caches it comes to
//! hold do not fault fresh pages in during steps.

use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medalign_model::generation::{AnswerText, FinishReason, Sampler};
use medalign_model::{KvCache, LanguageModel, SamplingParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::Metrics;
use crate::prefix_cache::PrefixCache;

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
        /// Prompt tokens reused from the prefix cache.
        cached_tokens: usize,
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
    /// Bytes of prompt caches kept for reuse ([`PrefixCache`]; 0 turns reuse off).
    pub prefix_cache_bytes: usize,
}

/// Most prompt tokens one request prefills in a step; a longer prompt takes several steps, cut
/// at the same places whatever else runs, so its logits do not depend on the load.
pub const PREFILL_CHUNK: usize = 512;

/// Prompt tokens one step takes on (whole chunks in arrival order, at least one chunk), so a
/// burst of long prompts holds the running decodes up for a bounded time.
pub const PREFILL_BUDGET: usize = 512;

struct Row {
    req: GenRequest,
    /// Prompt tokens already in the cache.
    prefilled: usize,
    /// Of those, the ones copied from the prefix cache.
    reused: usize,
    history: Vec<u32>,
    answer: AnswerText,
    sampler: Sampler,
    cache: KvCache,
    /// The token to feed at the next step.
    next: u32,
    done: bool,
}

impl Row {
    /// A row whose `cache` already holds the first positions of its prompt.
    fn new(req: GenRequest, cache: KvCache) -> Row {
        Row {
            history: req.prompt.clone(),
            prefilled: cache.len(),
            reused: cache.len(),
            sampler: Sampler::new(&req.sampling, 0),
            answer: AnswerText::new(&req.stop),
            req,
            cache,
            next: 0,
            done: false,
        }
    }

    /// The tokens this row feeds at the next step: the next chunk of its prompt, or the token
    /// it sampled last.
    fn input(&self) -> &[u32] {
        let prompt = &self.req.prompt;
        if self.prefilled < prompt.len() {
            &prompt[self.prefilled..prompt.len().min(self.prefilled + PREFILL_CHUNK)]
        } else {
            std::slice::from_ref(&self.next)
        }
    }

    /// Ends the request with an error (the model or the tokenizer failed).
    fn fail(&mut self, e: &str, metrics: &Metrics) {
        let _ = self.req.events.send(GenEvent::Error(e.to_string()));
        self.done = true;
        metrics.request_cancelled();
    }

    /// Ends the answer: sends the rest of its text and the summary.
    fn finish(&mut self, finish: FinishReason, lm: &LanguageModel, metrics: &Metrics) {
        if let Err(e) = self.answer.end(&lm.tokenizer, finish) {
            return self.fail(&e.to_string(), metrics);
        }
        self.done = true;
        let rest = self.answer.release();
        if !rest.is_empty() {
            let _ = self.req.events.send(GenEvent::Text(rest.to_string()));
        }
        let _ = self.req.events.send(GenEvent::Done {
            finish,
            prompt_tokens: self.req.prompt.len(),
            completion_tokens: self.answer.tokens().len(),
            cached_tokens: self.reused,
        });
        metrics.request_finished(self.answer.tokens().len());
    }

    /// Picks the next token from `logits`, sends the text that became final, and marks the row
    /// done when it ended (EOS, stop string, length, cancelled).
    fn advance(
        &mut self,
        mut logits: Vec<f32>,
        lm: &LanguageModel,
        eos: &[u32],
        max_context: usize,
        metrics: &Metrics,
    ) {
        let tok = self.sampler.sample(&mut logits, &self.history);
        self.history.push(tok);
        self.next = tok;
        if self.answer.tokens().is_empty() {
            metrics.first_token(self.req.queued.elapsed());
        }
        if eos.contains(&tok) {
            return self.finish(FinishReason::Eos, lm, metrics);
        }
        match self.answer.push(&lm.tokenizer, tok) {
            Ok(true) => return self.finish(FinishReason::Stop, lm, metrics),
            Ok(false) => {}
            Err(e) => return self.fail(&e.to_string(), metrics),
        }
        if self.answer.tokens().len() >= self.req.max_tokens || self.history.len() >= max_context {
            return self.finish(FinishReason::Length, lm, metrics);
        }
        let delta = self.answer.release();
        if !delta.is_empty() && self.req.events.send(GenEvent::Text(delta.to_string())).is_err() {
            self.done = true;
            metrics.request_cancelled();
        }
    }
}

/// The model thread's loop: returns when every sender of `queue` is gone and nothing is active.
pub fn run_model_thread(
    lm: LanguageModel,
    queue: Receiver<GenRequest>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
) {
    medalign_model::process::prefault_heap(limits.prefix_cache_bytes);
    let eos = lm.eos_ids();
    let mut prefixes = PrefixCache::new(limits.prefix_cache_bytes);
    // Emptied caches whose buffers new rows fill.
    let mut free: Vec<KvCache> = Vec::new();
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
        retire(&mut rows, &mut prefixes, &mut free, limits.max_batch);
        for req in arrived {
            if let Some(row) = join(req, &lm, limits, &mut prefixes, &mut free, &metrics) {
                rows.push(row);
            }
        }
        if rows.is_empty() {
            continue;
        }
        let started = Instant::now();
        // Decoding rows, and the prompt chunks that fit this step's budget.
        let stepping = plan_step(
            rows.iter().map(|r| (r.prefilled < r.req.prompt.len()).then(|| r.input().len())),
            PREFILL_BUDGET,
        );
        let inputs: Vec<Vec<u32>> = rows
            .iter()
            .zip(&stepping)
            .filter(|(_, &s)| s)
            .map(|(r, _)| r.input().to_vec())
            .collect();
        let seqs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let mut caches: Vec<&mut KvCache> =
            rows.iter_mut().zip(&stepping).filter(|(_, &s)| s).map(|(r, _)| &mut r.cache).collect();
        let logits =
            lm.model.forward_ragged(&seqs, &mut caches).and_then(|l| Ok(l.to_vec2::<f32>()?));
        let mut produced = 0;
        match logits {
            Ok(all) => {
                let stepped = rows.iter_mut().zip(&stepping).filter(|(_, &s)| s).map(|(r, _)| r);
                for ((row, l), fed) in stepped.zip(all).zip(&inputs) {
                    if row.prefilled < row.req.prompt.len() {
                        row.prefilled += fed.len();
                        if row.prefilled < row.req.prompt.len() {
                            continue; // the rest of the prompt comes at a later step
                        }
                        metrics.prefill(row.req.prompt.len() - row.reused, started.elapsed());
                    }
                    produced += 1;
                    row.advance(l, &lm, &eos, limits.max_context, &metrics);
                }
            }
            Err(e) => fail_all(&mut rows, &e.to_string(), &metrics),
        }
        retire(&mut rows, &mut prefixes, &mut free, limits.max_batch);
        metrics.decode_step(produced, started.elapsed(), rows.len());
    }
}

/// Which rows take part in a step, given each row's prompt chunk length (`None` for a row that
/// decodes): every decoding row, and in arrival order each prompt chunk that still fits `budget`
/// (the first one always, so a chunk larger than the budget still runs).
fn plan_step(rows: impl Iterator<Item = Option<usize>>, budget: usize) -> Vec<bool> {
    let mut left = budget;
    rows.map(|chunk| match chunk {
        None => true,
        Some(n) if n <= left || left == budget => {
            left = left.saturating_sub(n);
            true
        }
        Some(_) => false,
    })
    .collect()
}

/// Takes the finished rows out of the batch. Each one's cache is kept with its tokens (prompt and
/// answer) for reuse, and the caches that leave the prefix cache are emptied for new rows (at
/// most `keep` of them; memory already in use is faster to fill than fresh pages).
fn retire(rows: &mut Vec<Row>, prefixes: &mut PrefixCache, free: &mut Vec<KvCache>, keep: usize) {
    for row in rows.extract_if(.., |r| r.done) {
        for mut cache in prefixes.insert(row.history, row.cache) {
            if free.len() < keep {
                cache.reset();
                free.push(cache);
            }
        }
    }
}

/// A new request's row, prefilled at the next step from the longest prefix of its prompt that
/// `prefixes` holds, in a cache from `free` where there is one; `None` when it was cancelled or
/// its prompt cannot fit (reported to it alone, so it cannot fail the others' step).
fn join(
    req: GenRequest,
    lm: &LanguageModel,
    limits: BatchLimits,
    prefixes: &mut PrefixCache,
    free: &mut Vec<KvCache>,
    metrics: &Metrics,
) -> Option<Row> {
    if req.events.is_closed() {
        metrics.request_cancelled();
        return None;
    }
    if req.prompt.is_empty() || req.prompt.len() >= limits.max_context {
        let why = format!(
            "a prompt of {} tokens does not fit the context of {} tokens",
            req.prompt.len(),
            limits.max_context
        );
        let _ = req.events.send(GenEvent::Error(why));
        metrics.request_cancelled();
        return None;
    }
    let mut cache = free.pop().unwrap_or_else(|| lm.model.kv_cache());
    metrics.prefix_reused(prefixes.lookup(&req.prompt, &mut cache));
    Some(Row::new(req, cache))
}

fn fail_all(rows: &mut [Row], e: &str, metrics: &Metrics) {
    for r in rows.iter_mut().filter(|r| !r.done) {
        r.fail(e, metrics);
    }
}

#[cfg(test)]
mod tests {
    use super::plan_step;

    #[test]
    fn a_step_takes_every_decoding_row_and_the_prompts_that_fit_its_budget() {
        let rows = [None, Some(300), Some(300), None, Some(200), Some(20)];
        assert_eq!(plan_step(rows.into_iter(), 512), [true, true, false, true, true, false]);
        // A chunk over the whole budget still runs when it comes first, and alone.
        assert_eq!(plan_step([Some(600), Some(1), None].into_iter(), 512), [true, false, true]);
    }
}
