//! A blocking client for OpenAI-compatible `POST {base_url}/chat/completions`: one request at a time
//! per call, retried with backoff on 429, 5xx, timeouts, dropped connections and malformed bodies.
//!
//! The API key is read once from the environment variable the manifest names and only ever sent
//! in the `Authorization` header; `Debug` and every error leave it out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::llm::error::{excerpt, LlmError};
use crate::llm::request::{ChatReply, ChatRequest, ReplyFormat};
use crate::llm::retry::{parse_retry_after, retryable_status, RetryPolicy};

/// Where an endpoint is and how to talk to it.
#[derive(Clone, Debug, PartialEq)]
pub struct EndpointSettings {
    /// E.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The `model` field of each request.
    pub model: String,
    /// The environment variable holding the API key (none: no `Authorization` header).
    pub api_key_env: Option<String>,
    /// Limit for one attempt, connect to last byte.
    pub timeout: Duration,
    /// Retries and backoff.
    pub retry: RetryPolicy,
}

/// An OpenAI-compatible chat-completions client.
pub struct OpenAiClient {
    agent: ureq::Agent,
    url: String,
    settings: EndpointSettings,
    api_key: Option<String>,
    attempts: AtomicU64,
}

impl std::fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("url", &self.url)
            .field("model", &self.settings.model)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(ChatReply),
    Retry { reason: String, retry_after: Option<Duration> },
    Fail(LlmError),
}

impl OpenAiClient {
    /// A client for `settings`; fails when the named key variable is unset.
    pub fn new(settings: EndpointSettings) -> Result<Self, LlmError> {
        let api_key = match &settings.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.trim().is_empty() => {
                    medalign_engine::register_secret(&k);
                    Some(k.trim().to_string())
                }
                _ => return Err(LlmError::MissingApiKey { var: var.clone() }),
            },
            None => None,
        };
        let base = settings.base_url.trim_end_matches('/');
        let url = format!("{base}/chat/completions");
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(settings.timeout))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            );
        if is_loopback(base) {
            cfg = cfg.proxy(None);
        }
        Ok(OpenAiClient {
            agent: cfg.build().new_agent(),
            url,
            settings,
            api_key,
            attempts: AtomicU64::new(0),
        })
    }

    /// What the cache key calls this backend: endpoint and model, never the key.
    pub fn identity(&self) -> String {
        format!("openai:{}:{}", self.settings.base_url.trim_end_matches('/'), self.settings.model)
    }

    /// HTTP requests sent so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Asks once, retrying transient failures under the policy.
    pub fn complete(&self, req: &ChatRequest) -> Result<ChatReply, LlmError> {
        if req.format == ReplyFormat::ScoreDistribution {
            return Err(LlmError::Unsupported("score distributions need the local backend".into()));
        }
        let body = self.body(req).to_string();
        let mut rng = rand::rng();
        let mut retry = 0;
        loop {
            let (reason, retry_after) = match self.attempt(&body) {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { reason, retry_after } => (reason, retry_after),
            };
            if retry >= self.settings.retry.max_retries {
                return Err(LlmError::RetriesExhausted {
                    url: self.url.clone(),
                    attempts: retry + 1,
                    last: reason,
                });
            }
            std::thread::sleep(self.settings.retry.delay(retry, retry_after, &mut rng));
            retry += 1;
        }
    }

    fn body(&self, req: &ChatRequest) -> Value {
        let s = &req.sampling;
        let mut body = json!({
            "model": self.settings.model,
            "messages": req.messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
            "temperature": s.temperature,
            "max_tokens": req.max_tokens,
            "seed": s.seed,
        });
        if let Some(p) = s.top_p {
            body["top_p"] = json!(p);
        }
        if req.format == ReplyFormat::Json {
            body["response_format"] = json!({"type": "json_object"});
        }
        body
    }

    fn attempt(&self, body: &str) -> Attempt {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let mut request = self.agent.post(&self.url).header("content-type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let mut resp = match request.send(body) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                let secs = self.settings.timeout.as_secs_f64();
                return Attempt::Retry {
                    reason: format!("no reply within the {secs} s timeout (timeout_secs)"),
                    retry_after: None,
                };
            }
            Err(e @ (ureq::Error::Io(_) | ureq::Error::ConnectionFailed)) => {
                return Attempt::Retry { reason: e.to_string(), retry_after: None }
            }
            Err(e) => {
                return Attempt::Fail(LlmError::Transport {
                    url: self.url.clone(),
                    message: e.to_string(),
                })
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry {
                    reason: format!("reading the body: {e}"),
                    retry_after: None,
                }
            }
        };
        if status != 200 {
            let reason = format!("HTTP {status}: {}", excerpt(&text, 200));
            if retryable_status(status) {
                return Attempt::Retry { reason, retry_after };
            }
            return Attempt::Fail(LlmError::Status {
                url: self.url.clone(),
                status,
                body: excerpt(&text, 300),
            });
        }
        match parse_completion(&text) {
            Ok(reply) => Attempt::Done(reply),
            Err(why) => Attempt::Retry {
                reason: format!("malformed response ({why}): {}", excerpt(&text, 120)),
                retry_after: None,
            },
        }
    }
}

/// The reply in a chat-completions response body.
pub fn parse_completion(text: &str) -> Result<ChatReply, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let choice = v.get("choices").and_then(|c| c.get(0)).ok_or("no choices[0]")?;
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or("no choices[0].message.content")?;
    let usage = |k: &str| v.get("usage").and_then(|u| u.get(k)).and_then(Value::as_u64);
    Ok(ChatReply {
        text: content.to_string(),
        prompt_tokens: usage("prompt_tokens"),
        completion_tokens: usage("completion_tokens"),
        finish_reason: choice.get("finish_reason").and_then(Value::as_str).map(str::to_string),
    })
}

fn is_loopback(base: &str) -> bool {
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    matches!(host, "localhost" | "127.0.0.1") || rest.starts_with("[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_parse_or_say_why_not() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#;
        let r = parse_completion(ok).unwrap();
        assert_eq!(
            (r.text.as_str(), r.prompt_tokens, r.finish_reason.as_deref()),
            ("hi", Some(5), Some("stop"))
        );
        assert!(parse_completion("{\"choices\": [").unwrap_err().starts_with("not JSON"));
        assert_eq!(parse_completion(r#"{"choices":[]}"#).unwrap_err(), "no choices[0]");
    }

    #[test]
    fn loopback_hosts() {
        assert!(
            is_loopback("http://127.0.0.1:8080/v1")
                && is_loopback("http://localhost/v1")
                && is_loopback("http://[::1]:9/v1")
        );
        assert!(!is_loopback("https://api.openai.com/v1"));
    }
}
