//! The `backend:` params every LLM-calling stage shares, and [`Backend`], which answers a list of
//! requests through the reply cache: cached answers are read back, the rest are sent (a bounded pool
//! of threads for endpoints, batches for the local model) and each answer is cached as it arrives.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use medalign_engine::{CheckContext, ParamError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::llm::cache::ReplyCache;
use crate::llm::error::LlmError;
use crate::llm::local::LocalModel;
use crate::llm::openai::{EndpointSettings, OpenAiClient};
use crate::llm::request::{cache_key, ChatReply, ChatRequest};
use crate::llm::retry::RetryPolicy;

/// The model the pipeline uses when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// Where answers come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The model crate, in this process.
    #[default]
    Local,
    /// Any OpenAI-compatible chat-completions endpoint.
    Openai,
}

/// An LLM backend in a manifest. Switch to an endpoint with `backend: openai` and `base_url:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackendConfig {
    /// `local` (in-process, the default) or `openai` (any OpenAI-compatible endpoint).
    #[serde(default)]
    pub backend: BackendKind,
    /// Local: a known model name, a GGUF file or a safetensors folder. Endpoint: the `model` field.
    #[serde(default = "default_model")]
    pub model: String,
    /// Endpoint base URL, e.g. `https://api.openai.com/v1` (`openai` only).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key (`openai` only); the key itself is
    /// never written to manifests, artifacts, caches or logs.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Requests in flight at once (`openai`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Prompts per forward batch (`local`).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Seconds one HTTP attempt may take before it is retried.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Retries after the first attempt on 429, 5xx, timeouts and malformed replies.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff in milliseconds; it doubles each retry (with jitter, and at least `Retry-After`).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest computed backoff in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_model() -> String {
    DEFAULT_MODEL.into()
}
fn default_concurrency() -> usize {
    4
}
fn default_batch_size() -> usize {
    4
}
fn default_timeout() -> f64 {
    120.0
}
fn default_max_retries() -> u32 {
    6
}
fn default_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

impl Default for BackendConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl BackendConfig {
    /// Problems with these params, at `at` (e.g. `judges[0]`).
    pub fn check(&self, at: &str) -> Vec<ParamError> {
        let mut errors = Vec::new();
        let field = |f: &str| if at.is_empty() { f.to_string() } else { format!("{at}.{f}") };
        match (self.backend, &self.base_url) {
            (BackendKind::Openai, None) => {
                errors.push(ParamError::new(field("base_url"), "backend openai needs a base_url"))
            }
            (BackendKind::Openai, Some(u))
                if !(u.starts_with("http://") || u.starts_with("https://")) =>
            {
                errors.push(ParamError::new(
                    field("base_url"),
                    format!("expected an http:// or https:// URL, got {u:?}"),
                ))
            }
            (BackendKind::Local, Some(_)) => errors
                .push(ParamError::new(field("base_url"), "only backend openai takes a base_url")),
            _ => {}
        }
        if self.backend == BackendKind::Local && self.api_key_env.is_some() {
            errors.push(ParamError::new(
                field("api_key_env"),
                "only backend openai takes an api_key_env",
            ));
        }
        if self.concurrency == 0 || self.batch_size == 0 {
            errors.push(ParamError::new(
                field("concurrency"),
                "concurrency and batch_size must be at least 1",
            ));
        }
        if !(self.timeout_secs > 0.0 && self.timeout_secs.is_finite()) {
            errors.push(ParamError::new(
                field("timeout_secs"),
                format!("expected seconds > 0, got {}", self.timeout_secs),
            ));
        }
        errors
    }

    /// Sets up the client, or resolves the local model (paths from the current directory,
    /// registry references in the default store); it loads on first use.
    pub fn build(&self) -> Result<Backend, LlmError> {
        self.build_in(&CheckContext::new("."), None)
    }

    /// [`Self::build`] for a stage: the model resolved where the stage resolves paths and
    /// registry references, with `adapter` applied when given.
    pub fn build_in(
        &self,
        place: &CheckContext,
        adapter: Option<&LocalAdapter>,
    ) -> Result<Backend, LlmError> {
        match self.backend {
            BackendKind::Local => Ok(Backend::Local {
                spec: self.model.clone(),
                source: medalign_registry::resolve(
                    &self.model,
                    &place.manifest_dir,
                    &place.store_dir,
                )
                .map_err(|e| LlmError::Local(format!("{}: {e}", self.model)))?,
                adapter: adapter.cloned(),
                batch_size: self.batch_size,
                model: OnceLock::new(),
            }),
            BackendKind::Openai => Ok(Backend::OpenAi {
                client: OpenAiClient::new(EndpointSettings {
                    base_url: self.base_url.clone().unwrap_or_default(),
                    model: self.model.clone(),
                    api_key_env: self.api_key_env.clone(),
                    timeout: Duration::from_secs_f64(self.timeout_secs),
                    retry: RetryPolicy {
                        max_retries: self.max_retries,
                        initial: Duration::from_millis(self.backoff_ms),
                        max_backoff: Duration::from_millis(self.max_backoff_ms),
                        ..Default::default()
                    },
                })?,
                concurrency: self.concurrency,
            }),
        }
    }
}

/// A LoRA adapter a local backend applies: a PEFT folder and the cache key of its artifact, which
/// names it in the reply cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAdapter {
    /// The PEFT folder.
    pub dir: PathBuf,
    /// The artifact's cache key.
    pub key: String,
}

/// A ready backend.
pub enum Backend {
    /// A model in this process, loaded on the first request the cache cannot answer.
    Local {
        /// The model as the params name it.
        spec: String,
        /// What that resolved to.
        source: medalign_registry::ModelSource,
        /// The adapter applied to it.
        adapter: Option<LocalAdapter>,
        /// Prompts per forward batch.
        batch_size: usize,
        /// The model once loaded.
        model: OnceLock<Result<LocalModel, LlmError>>,
    },
    /// An endpoint, called from up to `concurrency` threads.
    OpenAi {
        /// The client.
        client: OpenAiClient,
        /// Requests in flight at once.
        concurrency: usize,
    },
}

impl Backend {
    /// What the cache key calls this backend.
    pub fn identity(&self) -> String {
        match self {
            Backend::Local { spec, source, adapter, .. } => {
                LocalModel::identity_of(spec, source, adapter.as_ref())
            }
            Backend::OpenAi { client, .. } => client.identity(),
        }
    }

    /// Answers every request, in order: from `cache` when it can, else from the backend, caching
    /// each answer as soon as it arrives. `on_done` is told how many requests just finished.
    pub fn complete_all(
        &self,
        reqs: &[ChatRequest],
        cache: &ReplyCache,
        on_done: &(dyn Fn(u64) + Sync),
    ) -> Vec<Result<ChatReply, LlmError>> {
        let identity = self.identity();
        let keys: Vec<String> = reqs.iter().map(|r| cache_key(&identity, r)).collect();
        let results: Mutex<Vec<Option<Result<ChatReply, LlmError>>>> =
            Mutex::new(vec![None; reqs.len()]);
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut todo = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if first_of.contains_key(key.as_str()) {
                continue;
            }
            first_of.insert(key, i);
            match cache.get(key) {
                Some(reply) => results.lock().unwrap()[i] = Some(Ok(reply)),
                None => todo.push(i),
            }
        }
        on_done((reqs.len() - todo.len()) as u64);
        let finish = |i: usize, r: Result<ChatReply, LlmError>| {
            let r = r.and_then(|reply| {
                cache.put(&keys[i], &reply).map(|_| reply).map_err(LlmError::Cache)
            });
            results.lock().unwrap()[i] = Some(r);
        };
        match self {
            Backend::Local { spec, source, adapter, batch_size, model } if !todo.is_empty() => {
                let model = match model
                    .get_or_init(|| LocalModel::load(spec, source, adapter.as_ref(), *batch_size))
                {
                    Ok(m) => m,
                    Err(e) => {
                        todo.iter()
                            .for_each(|&i| results.lock().unwrap()[i] = Some(Err(e.clone())));
                        on_done(todo.len() as u64);
                        return self.finish_all(results, &keys, &first_of);
                    }
                };
                for chunk in todo.chunks(model.batch_size() * 4) {
                    let batch: Vec<&ChatRequest> = chunk.iter().map(|&i| &reqs[i]).collect();
                    for (&i, r) in chunk.iter().zip(model.complete_batch(&batch)) {
                        finish(i, r);
                    }
                    on_done(chunk.len() as u64);
                }
            }
            Backend::Local { .. } => {}
            Backend::OpenAi { client, concurrency } => {
                let next = AtomicUsize::new(0);
                std::thread::scope(|s| {
                    for _ in 0..(*concurrency).min(todo.len()) {
                        s.spawn(|| loop {
                            let n = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&i) = todo.get(n) else { break };
                            finish(i, client.complete(&reqs[i]));
                            on_done(1);
                        });
                    }
                });
            }
        }
        self.finish_all(results, &keys, &first_of)
    }

    /// Copies each answer to the duplicates of its request.
    fn finish_all(
        &self,
        results: Mutex<Vec<Option<Result<ChatReply, LlmError>>>>,
        keys: &[String],
        first_of: &HashMap<&str, usize>,
    ) -> Vec<Result<ChatReply, LlmError>> {
        let mut results = results.into_inner().unwrap();
        for (i, key) in keys.iter().enumerate() {
            if results[i].is_none() {
                results[i] = results[first_of[key.as_str()]].clone();
            }
        }
        results.into_iter().map(|r| r.expect("every request answered")).collect()
    }
}

/// Backends built once per stage run and shared by every user with equal params (two generators
/// on the same local model load it once).
pub struct Backends {
    built: Vec<(BackendConfig, Backend)>,
    place: CheckContext,
    adapter: Option<LocalAdapter>,
}

impl Backends {
    /// No backend built yet; local models resolve as on the command line ([`BackendConfig::build`]).
    pub fn new() -> Self {
        Self { built: Vec::new(), place: CheckContext::new("."), adapter: None }
    }

    /// For a stage: local models resolve where its paths and registry references do, and every
    /// one applies `adapter` when given.
    pub fn for_stage(place: &CheckContext, adapter: Option<LocalAdapter>) -> Self {
        Self { built: Vec::new(), place: place.clone(), adapter }
    }

    /// The backend for `cfg`, built on first use.
    pub fn get(&mut self, cfg: &BackendConfig) -> Result<&Backend, LlmError> {
        let same = |c: &BackendConfig| BackendConfig { concurrency: 0, batch_size: 0, ..c.clone() };
        let pos = match self.built.iter().position(|(c, _)| same(c) == same(cfg)) {
            Some(p) => p,
            None => {
                self.built.push((cfg.clone(), cfg.build_in(&self.place, self.adapter.as_ref())?));
                self.built.len() - 1
            }
        };
        Ok(&self.built[pos].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adapter_is_part_of_a_local_backends_cache_identity() {
        let cfg = BackendConfig::default();
        let plain = Backends::new().get(&cfg).unwrap().identity();
        let a =
            LocalAdapter { dir: PathBuf::from("/store/artifacts/k1/adapter"), key: "k1".into() };
        let place = CheckContext::new(".");
        let tuned = Backends::for_stage(&place, Some(a.clone())).get(&cfg).unwrap().identity();
        let other = Backends::for_stage(&place, Some(LocalAdapter { key: "k2".into(), ..a }))
            .get(&cfg)
            .unwrap()
            .identity();
        assert_eq!(plain, format!("local:{DEFAULT_MODEL}"));
        assert_eq!(tuned, format!("local:{DEFAULT_MODEL}+adapter:k1"));
        assert_ne!(
            tuned, other,
            "a retrained adapter must not be answered from the old one's cache"
        );
    }
}
