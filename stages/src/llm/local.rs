//! The in-process backend: a [`LanguageModel`] from the model crate answering chat requests in
//! batches (one left-padded batch per group of requests with equal sampling), and, for judges,
//! the probability of each score `1`..`5` read from one forward pass (G-Eval's form-filling scores).

use candle_core::Tensor;
use medalign_model::{generate, GenerationConfig, LanguageModel, LoadOptions};
use medalign_registry::ModelSource;

use crate::kinds::examples::Message;
use crate::llm::backend::LocalAdapter;
use crate::llm::error::LlmError;
use crate::llm::request::{ChatReply, ChatRequest, ReplyFormat};

/// The scores a distribution is read over.
pub const SCORE_LABELS: [&str; 5] = ["1", "2", "3", "4", "5"];

/// A model loaded in this process.
pub struct LocalModel {
    lm: LanguageModel,
    identity: String,
    batch_size: usize,
    score_ids: Vec<u32>,
}

fn local(e: impl std::fmt::Display) -> LlmError {
    LlmError::Local(e.to_string())
}

impl LocalModel {
    /// Loads `source` (what the params' `spec` resolved to) for inference, with `adapter` applied
    /// when given.
    pub fn load(
        spec: &str,
        source: &ModelSource,
        adapter: Option<&LocalAdapter>,
        batch_size: usize,
    ) -> Result<Self, LlmError> {
        if source.adapter.is_some() && adapter.is_some() {
            return Err(LlmError::Local(format!("{spec} is registered with its own adapter and cannot take the stage's `adapter` input")));
        }
        let mut lm = source
            .load(&LoadOptions::inference())
            .map_err(|e| LlmError::Local(format!("{spec}: {e}")))?;
        if let Some(a) = adapter {
            lm.load_adapter(&a.dir)
                .map_err(|e| LlmError::Local(format!("adapter {}: {e}", a.dir.display())))?;
        }
        let mut model = Self::new(lm, spec, batch_size)?;
        model.identity = Self::identity_of(spec, source, adapter);
        Ok(model)
    }

    /// Wraps an already loaded model; `spec` names it in cache keys.
    pub fn new(lm: LanguageModel, spec: &str, batch_size: usize) -> Result<Self, LlmError> {
        let mut score_ids = Vec::new();
        for label in SCORE_LABELS {
            match lm.tokenizer.encode(label, false).map_err(local)?.as_slice() {
                [id] => score_ids.push(*id),
                ids => {
                    return Err(LlmError::Local(format!(
                        "{spec}: score {label:?} is {} tokens, not one",
                        ids.len()
                    )))
                }
            }
        }
        Ok(LocalModel {
            lm,
            identity: format!("local:{spec}"),
            batch_size: batch_size.max(1),
            score_ids,
        })
    }

    /// Prompts per forward batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// What the cache key calls this backend.
    pub fn identity(&self) -> String {
        self.identity.clone()
    }

    /// What the cache key calls the model `spec` with `adapter`, loaded or not.
    pub fn identity_of(spec: &str, source: &ModelSource, adapter: Option<&LocalAdapter>) -> String {
        let model = match &source.registered {
            Some(version) => format!("local:{spec}={version}"),
            None => format!("local:{spec}"),
        };
        match adapter {
            Some(a) => format!("{model}+adapter:{}", a.key),
            None => model,
        }
    }

    /// Answers `reqs` in order, batching where the sampling params agree.
    pub fn complete_batch(&self, reqs: &[&ChatRequest]) -> Vec<Result<ChatReply, LlmError>> {
        let mut out = Vec::with_capacity(reqs.len());
        let mut start = 0;
        while start < reqs.len() {
            let first = reqs[start];
            let scoring = |r: &ChatRequest| r.format == ReplyFormat::ScoreDistribution;
            let same = |r: &&&ChatRequest| {
                r.sampling == first.sampling
                    && r.max_tokens == first.max_tokens
                    && scoring(r) == scoring(first)
            };
            let len = reqs[start..].iter().take(self.batch_size).take_while(same).count();
            let group = &reqs[start..start + len];
            let result = if first.format == ReplyFormat::ScoreDistribution {
                self.score(group)
            } else {
                self.generate(group)
            };
            match result {
                Ok(replies) => out.extend(replies.into_iter().map(Ok)),
                Err(e) => out.extend(group.iter().map(|_| Err(e.clone()))),
            }
            start += len;
        }
        out
    }

    fn prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>, LlmError> {
        let mut ids = self.lm.chat_prompt_ids(messages).map_err(local)?;
        // Keep the end of an over-long prompt, leaving room to answer.
        let room = self.lm.config().max_position_embeddings.saturating_sub(256).max(64);
        if ids.len() > room {
            ids.drain(..ids.len() - room);
        }
        Ok(ids)
    }

    fn generate(&self, group: &[&ChatRequest]) -> Result<Vec<ChatReply>, LlmError> {
        let prompts =
            group.iter().map(|r| self.prompt_ids(&r.messages)).collect::<Result<Vec<_>, _>>()?;
        let cfg = GenerationConfig {
            max_new_tokens: group[0].max_tokens as usize,
            sampling: group[0].sampling.clone(),
            stop: Vec::new(),
            eos_ids: self.lm.eos_ids(),
        };
        let gens = generate(&self.lm.model, &self.lm.tokenizer, &prompts, &cfg, &mut |_| true)
            .map_err(local)?;
        Ok(gens
            .into_iter()
            .map(|g| ChatReply {
                text: g.text.trim().to_string(),
                prompt_tokens: Some(g.prompt_tokens as u64),
                completion_tokens: Some(g.token_ids.len() as u64),
                finish_reason: Some(
                    serde_json::to_value(g.finish_reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                ),
            })
            .collect())
    }

    /// One forward pass per request: the next-token probabilities of `1`..`5`, renormalized.
    fn score(&self, group: &[&ChatRequest]) -> Result<Vec<ChatReply>, LlmError> {
        let prompts =
            group.iter().map(|r| self.prompt_ids(&r.messages)).collect::<Result<Vec<_>, _>>()?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let pad_id = self.lm.eos_ids().first().copied().unwrap_or(0);
        let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let rows: Vec<u32> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(pad_id, longest - p.len()).chain(p.iter().copied()))
            .collect();
        let input = Tensor::from_vec(rows, (prompts.len(), longest), self.lm.model.device())
            .map_err(local)?;
        let pad_arg = pads.iter().any(|&p| p > 0).then_some(pads.as_slice());
        let logits: Vec<Vec<f32>> = self
            .lm
            .model
            .forward_last(&input, None, pad_arg)
            .map_err(local)?
            .to_vec2()
            .map_err(local)?;
        Ok(logits
            .iter()
            .zip(&prompts)
            .map(|(row, p)| {
                let picked: Vec<f64> =
                    self.score_ids.iter().map(|&i| row[i as usize] as f64).collect();
                let max = picked.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exp: Vec<f64> = picked.iter().map(|l| (l - max).exp()).collect();
                let total: f64 = exp.iter().sum();
                let probs: Vec<f64> = exp.iter().map(|e| (e / total * 1e4).round() / 1e4).collect();
                ChatReply {
                    text: serde_json::to_string(&probs).expect("floats serialize"),
                    prompt_tokens: Some(p.len() as u64),
                    completion_tokens: Some(0),
                    finish_reason: Some("score".into()),
                }
            })
            .collect())
    }
}
