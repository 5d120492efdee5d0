//! [`AppState`]: what every handler shares: the served model's names, its tokenizer and chat
//! template (prompts are encoded on the request's task, not the model thread), the queue to the
//! model thread, metrics and the API key.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use axum::http::StatusCode;
use medalign_model::{ChatTemplate, Message, Tokenizer};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::api::Settings;
use crate::batcher::{GenEvent, GenRequest};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Shared server state.
pub struct AppState {
    /// The id `/v1/models` lists and responses carry.
    pub model_id: String,
    /// Names a request's `model` may use (the id, the `--model` argument).
    pub accepted_names: Vec<String>,
    /// Unix time the server started.
    pub created: u64,
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's chat template.
    pub template: ChatTemplate,
    /// Context length in tokens.
    pub max_context: usize,
    /// `max_tokens` when a request gives none (capped by the context).
    pub default_max_tokens: usize,
    /// The queue to the model thread.
    pub queue: Sender<GenRequest>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Bearer token required on `/v1/*`, if any.
    pub api_key: Option<String>,
}

/// A queued generation: its events and its prompt length.
pub struct Submitted {
    /// Events from the model thread.
    pub events: UnboundedReceiver<GenEvent>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
}

impl AppState {
    /// Refuses a `model` this server does not serve.
    pub fn check_model(&self, model: &str) -> Result<(), ApiError> {
        if self.accepted_names.iter().any(|n| n == model) {
            return Ok(());
        }
        Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model `{model}` does not exist; this server serves `{}`",
                self.model_id
            ),
            param: Some("model".into()),
            code: "model_not_found",
        })
    }

    /// Prompt ids of a conversation, through the chat template.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, ApiError> {
        let text = self
            .template
            .render(messages, true)
            .map_err(|e| ApiError::invalid("messages", e.to_string()))?;
        self.tokenizer
            .encode(&text, false)
            .map_err(|e| ApiError::invalid("messages", e.to_string()))
    }

    /// Prompt ids of a plain prompt (with the checkpoint's BOS).
    pub fn text_prompt(&self, prompt: &str) -> Result<Vec<u32>, ApiError> {
        self.tokenizer.encode(prompt, true).map_err(|e| ApiError::invalid("prompt", e.to_string()))
    }

    /// Checks the context budget and queues the request.
    pub fn submit(
        &self,
        prompt: Vec<u32>,
        settings: &Settings,
        prompt_param: &str,
    ) -> Result<Submitted, ApiError> {
        let n = prompt.len();
        if n == 0 {
            return Err(ApiError::invalid(prompt_param, "the prompt encodes to no tokens"));
        }
        let room = self.max_context.saturating_sub(n);
        let max_tokens = settings.max_tokens.unwrap_or(self.default_max_tokens.min(room));
        if room == 0 || n + max_tokens > self.max_context {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!(
                    "This model's maximum context length is {} tokens. However, you requested {} tokens ({n} in the \
                     prompt, {max_tokens} in the completion). Please reduce the prompt or max_tokens.",
                    self.max_context,
                    n + max_tokens
                ),
                param: Some(if room == 0 { prompt_param.to_string() } else { "max_tokens".into() }),
                code: "context_length_exceeded",
            });
        }
        let (tx, rx) = unbounded_channel();
        let req = GenRequest {
            prompt,
            max_tokens,
            sampling: settings.sampling.clone(),
            stop: settings.stop.clone(),
            events: tx,
            queued: Instant::now(),
        };
        self.metrics.enqueued();
        self.queue.send(req).map_err(|_| {
            self.metrics.dequeued(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the model thread has stopped",
            )
        })?;
        Ok(Submitted { events: rx, prompt_tokens: n })
    }
}
