//! The OpenAI request bodies this server accepts, validated into a [`Job`]: the prompt ids and
//! generation settings the model thread runs.

use medalign_model::{Message, SamplingParams};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// `content` of a chat message: a string or a list of `{"type": "text", "text": ...}` parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Content parts; only text parts are supported.
    Parts(Vec<Value>),
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (or `developer`, read as `system`).
    pub role: String,
    /// The text.
    pub content: Option<Content>,
}

/// `stop`: one string or up to four.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// The sampling fields of a request body, shared by both endpoints (OpenAI names, plus `top_k` and
/// `repetition_penalty`), as they come over the wire: [`SamplingFields::validate`] turns them into
/// the model crate's [`SamplingParams`] and the other [`Settings`].
#[derive(Debug, Default, Deserialize)]
pub struct SamplingFields {
    /// Most new tokens.
    pub max_tokens: Option<i64>,
    /// Newer name of `max_tokens`.
    pub max_completion_tokens: Option<i64>,
    /// 0 to 2; 0 is greedy.
    pub temperature: Option<f64>,
    /// (0, 1].
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens.
    pub top_k: Option<i64>,
    /// 1 = none; (0, 10].
    pub repetition_penalty: Option<f64>,
    /// -2 to 2; accepted, not applied.
    pub presence_penalty: Option<f64>,
    /// -2 to 2; accepted, not applied.
    pub frequency_penalty: Option<f64>,
    /// Only 1 is supported.
    pub n: Option<i64>,
    /// Seed of the random stream.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Stream as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    /// The served model's id.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    /// The served model's id.
    pub model: String,
    /// A string, or a list holding one string.
    pub prompt: Value,
    /// Sampling and streaming.
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// Validated generation settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Most new tokens (`None`: up to the context).
    pub max_tokens: Option<usize>,
    /// Sampler settings.
    pub sampling: SamplingParams,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Stream the answer.
    pub stream: bool,
    /// Send usage in the stream.
    pub include_usage: bool,
}

fn range(param: &str, v: Option<f64>, lo: f64, hi: f64, lo_open: bool) -> Result<(), ApiError> {
    match v {
        Some(x) if !x.is_finite() || x > hi || x < lo || (lo_open && x == lo) => {
            let open = if lo_open { "(" } else { "[" };
            Err(ApiError::invalid(param, format!("{param} must be in {open}{lo}, {hi}], got {x}")))
        }
        _ => Ok(()),
    }
}

impl SamplingFields {
    /// Checks every field and turns them into [`Settings`].
    pub fn validate(&self) -> Result<Settings, ApiError> {
        range("temperature", self.temperature, 0.0, 2.0, false)?;
        range("top_p", self.top_p, 0.0, 1.0, true)?;
        range("repetition_penalty", self.repetition_penalty, 0.0, 10.0, true)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0, false)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0, false)?;
        if let Some(n) = self.n.filter(|&n| n != 1) {
            return Err(ApiError::invalid(
                "n",
                format!("n must be 1 (this server returns one choice), got {n}"),
            ));
        }
        if let Some(k) = self.top_k.filter(|&k| k < 1) {
            return Err(ApiError::invalid("top_k", format!("top_k must be at least 1, got {k}")));
        }
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            Some(m) if m < 1 => {
                return Err(ApiError::invalid(
                    "max_tokens",
                    format!("max_tokens must be at least 1, got {m}"),
                ));
            }
            m => m.map(|m| m as usize),
        };
        let stop = match &self.stop {
            None => vec![],
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 || stop.iter().any(String::is_empty) {
            return Err(ApiError::invalid("stop", "stop takes up to 4 non-empty strings"));
        }
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        Ok(Settings {
            max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature.unwrap_or(1.0),
                top_k: self.top_k.map(|k| k as usize),
                top_p: self.top_p.filter(|&p| p < 1.0),
                repetition_penalty: self.repetition_penalty.unwrap_or(1.0),
                seed,
            },
            stop,
            stream: self.stream,
            include_usage: self.stream_options.as_ref().is_some_and(|o| o.include_usage),
        })
    }
}

impl ChatRequest {
    /// The messages as the chat template takes them.
    pub fn messages(&self) -> Result<Vec<Message>, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "messages must hold at least one message"));
        }
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let role = match m.role.as_str() {
                    "developer" => "system",
                    r @ ("system" | "user" | "assistant") => r,
                    r => {
                        return Err(ApiError::invalid(
                            &format!("messages[{i}].role"),
                            format!("unsupported role {r:?}"),
                        ))
                    }
                };
                let text = match &m.content {
                    None => String::new(),
                    Some(Content::Text(t)) => t.clone(),
                    Some(Content::Parts(parts)) => {
                        let mut s = String::new();
                        for p in parts {
                            match (p["type"].as_str(), p["text"].as_str()) {
                                (Some("text"), Some(t)) => s.push_str(t),
                                _ => {
                                    return Err(ApiError::invalid(
                                        &format!("messages[{i}].content"),
                                        "only text content parts are supported",
                                    ))
                                }
                            }
                        }
                        s
                    }
                };
                Ok(Message::new(role, text))
            })
            .collect()
    }
}

impl CompletionRequest {
    /// The prompt text.
    pub fn prompt(&self) -> Result<String, ApiError> {
        match &self.prompt {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Array(v) if v.len() == 1 && v[0].as_str().is_some_and(|s| !s.is_empty()) => {
                Ok(v[0].as_str().unwrap_or_default().to_string())
            }
            _ => Err(ApiError::invalid(
                "prompt",
                "prompt must be a non-empty string (or a list of one)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(json: &str) -> Result<Settings, ApiError> {
        serde_json::from_str::<SamplingFields>(json).unwrap().validate()
    }

    #[test]
    fn rejects_out_of_range_sampling() {
        for (body, param) in [
            (r#"{"temperature": 3}"#, "temperature"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"n": 2}"#, "n"),
            (r#"{"stop": ["a","b","c","d","e"]}"#, "stop"),
        ] {
            assert_eq!(sampling(body).unwrap_err().param.as_deref(), Some(param), "{body}");
        }
        let ok = sampling(r#"{"temperature": 0, "top_p": 1, "stop": "x", "seed": 3}"#).unwrap();
        assert_eq!(
            (ok.sampling.temperature, ok.sampling.top_p, ok.stop, ok.sampling.seed),
            (0.0, None, vec!["x".to_string()], 3)
        );
    }
}
