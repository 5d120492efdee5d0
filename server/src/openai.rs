//! `POST /v1/chat/completions` and `POST /v1/completions`: whole answers with usage, or
//! server-sent events (`chat.completion.chunk` / `text_completion` chunks, an optional usage
//! chunk, then `[DONE]`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use medalign_model::generation::FinishReason;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::api::{ChatRequest, CompletionRequest, Settings};
use crate::batcher::GenEvent;
use crate::error::ApiError;
use crate::router::parse_body;
use crate::state::{AppState, Submitted};

/// Which endpoint a response is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

impl Endpoint {
    /// The route, for metrics.
    pub fn route(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completion => "/v1/completions",
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The text.
    pub text: String,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Prompt tokens whose keys and values were reused from an earlier prompt.
    pub cached_tokens: usize,
}

impl Answer {
    /// The OpenAI `usage` object.
    pub fn usage(&self) -> Value {
        usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)
    }
}

fn usage(prompt: usize, completion: usize, cached: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}})
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn response_id(endpoint: Endpoint) -> String {
    let prefix = if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" };
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{prefix}-{t:x}{:04x}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Waits for the whole answer.
pub async fn collect(mut events: UnboundedReceiver<GenEvent>) -> Result<Answer, ApiError> {
    let mut text = String::new();
    while let Some(ev) = events.recv().await {
        match ev {
            GenEvent::Text(t) => text.push_str(&t),
            GenEvent::Done { finish, prompt_tokens, completion_tokens, cached_tokens } => {
                return Ok(Answer {
                    text,
                    finish_reason: finish_name(finish),
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                });
            }
            GenEvent::Error(e) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "model_error",
                    e,
                ))
            }
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the model thread stopped",
    ))
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let req: ChatRequest = parse_body(body)?;
        state.check_model(&req.model)?;
        let messages = req.messages()?;
        let settings = req.sampling.validate()?;
        let prompt = state.chat_prompt(&messages)?;
        let submitted = state.submit(prompt, &settings, "messages")?;
        Ok::<_, ApiError>((req.model, settings, submitted))
    }
    .await;
    respond(state, Endpoint::Chat, started, result).await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = async {
        let req: CompletionRequest = parse_body(body)?;
        state.check_model(&req.model)?;
        let prompt = req.prompt()?;
        let settings = req.sampling.validate()?;
        let ids = state.text_prompt(&prompt)?;
        let submitted = state.submit(ids, &settings, "prompt")?;
        Ok::<_, ApiError>((req.model, settings, submitted))
    }
    .await;
    respond(state, Endpoint::Completion, started, result).await
}

async fn respond(
    state: Arc<AppState>,
    endpoint: Endpoint,
    started: Instant,
    result: Result<(String, Settings, Submitted), ApiError>,
) -> Response {
    let (model, settings, submitted) = match result {
        Ok(r) => r,
        Err(e) => {
            state.metrics.request(endpoint.route(), e.status.as_u16(), started.elapsed());
            return e.into_response();
        }
    };
    let id = response_id(endpoint);
    let created = unix_now();
    if settings.stream {
        let chunks = Chunks { endpoint, id, model, created };
        let s =
            event_stream(chunks, submitted.events, settings.include_usage, state.clone(), started);
        return Sse::new(s).keep_alive(KeepAlive::default()).into_response();
    }
    match collect(submitted.events).await {
        Ok(a) => {
            state.metrics.request(endpoint.route(), 200, started.elapsed());
            let choice = match endpoint {
                Endpoint::Chat => {
                    json!({"index": 0, "message": {"role": "assistant", "content": a.text},
                                         "logprobs": null, "finish_reason": a.finish_reason})
                }
                Endpoint::Completion => {
                    json!({"index": 0, "text": a.text, "logprobs": null, "finish_reason": a.finish_reason})
                }
            };
            let object =
                if endpoint == Endpoint::Chat { "chat.completion" } else { "text_completion" };
            Json(json!({"id": id, "object": object, "created": created, "model": model,
                        "choices": [choice], "usage": a.usage()}))
            .into_response()
        }
        Err(e) => {
            state.metrics.request(endpoint.route(), e.status.as_u16(), started.elapsed());
            e.into_response()
        }
    }
}

/// The fixed fields of every chunk of one stream.
struct Chunks {
    endpoint: Endpoint,
    id: String,
    model: String,
    created: u64,
}

impl Chunks {
    fn chunk(&self, delta: Option<&str>, finish: Option<&str>, first: bool) -> String {
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let mut d = json!({});
                if first {
                    d["role"] = json!("assistant");
                }
                if let Some(t) = delta {
                    d["content"] = json!(t);
                }
                json!({"index": 0, "delta": d, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completion => {
                json!({"index": 0, "text": delta.unwrap_or(""), "logprobs": null, "finish_reason": finish})
            }
        };
        self.wrap(json!([choice]), None)
    }

    fn wrap(&self, choices: Value, usage: Option<Value>) -> String {
        let object = if self.endpoint == Endpoint::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut v = json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices});
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v.to_string()
    }
}

struct StreamState {
    chunks: Chunks,
    events: UnboundedReceiver<GenEvent>,
    pending: VecDeque<String>,
    done: bool,
    include_usage: bool,
    state: Arc<AppState>,
    started: Instant,
}

fn event_stream(
    chunks: Chunks,
    events: UnboundedReceiver<GenEvent>,
    include_usage: bool,
    state: Arc<AppState>,
    started: Instant,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut pending = VecDeque::new();
    if chunks.endpoint == Endpoint::Chat {
        pending.push_back(chunks.chunk(Some(""), None, true));
    }
    let st = StreamState { chunks, events, pending, done: false, include_usage, state, started };
    stream::unfold(st, |mut st| async move {
        loop {
            if let Some(data) = st.pending.pop_front() {
                return Some((Ok(Event::default().data(data)), st));
            }
            if st.done {
                return None;
            }
            match st.events.recv().await {
                Some(GenEvent::Text(t)) => {
                    st.pending.push_back(st.chunks.chunk(Some(&t), None, false))
                }
                Some(GenEvent::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                }) => {
                    st.pending.push_back(st.chunks.chunk(None, Some(finish_name(finish)), false));
                    if st.include_usage {
                        st.pending.push_back(st.chunks.wrap(
                            json!([]),
                            Some(usage(prompt_tokens, completion_tokens, cached_tokens)),
                        ));
                    }
                    st.pending.push_back("[DONE]".into());
                    st.state.metrics.request(st.chunks.endpoint.route(), 200, st.started.elapsed());
                    st.done = true;
                }
                Some(GenEvent::Error(e)) => {
                    let err = ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "model_error",
                        e,
                    );
                    st.pending.push_back(err.body().to_string());
                    st.pending.push_back("[DONE]".into());
                    st.state.metrics.request(st.chunks.endpoint.route(), 500, st.started.elapsed());
                    st.done = true;
                }
                None => st.done = true,
            }
        }
    })
}
