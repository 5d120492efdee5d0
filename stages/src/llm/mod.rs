//! The LLM clients generate and judge share: OpenAI-compatible endpoints (bounded concurrency,
//! retries with backoff and jitter honouring `Retry-After`) and the in-process model, both behind a
//! per-request reply cache on disk so a rerun or a resume after a crash sends nothing already answered.

mod backend;
mod cache;
mod error;
mod local;
mod openai;
mod request;
mod retry;

pub use backend::{Backend, BackendConfig, BackendKind, Backends, LocalAdapter, DEFAULT_MODEL};
pub use cache::ReplyCache;
pub use error::LlmError;
pub use local::{LocalModel, SCORE_LABELS};
pub use openai::{parse_completion, EndpointSettings, OpenAiClient};
pub use request::{cache_key, ChatReply, ChatRequest, ReplyFormat, CACHE_VERSION};
pub use retry::{parse_retry_after, retryable_status, RetryPolicy};
