//! What is asked of a chat model and what it answered, and the versioned cache key of a request.
//!
//! The key is explicit bytes (as sccache builds its keys): a version tag, then the backend's identity
//! (endpoint and model, never the API key), every message and every sampling param, each
//! length-prefixed, hashed with BLAKE3. Floats are normalized (`-0.0` is `0.0`) before their bits go in.

use medalign_model::SamplingParams;
use serde::{Deserialize, Serialize};

use crate::kinds::examples::Message;

/// Bump when the meaning of a cached reply changes; every old entry is then ignored.
pub const CACHE_VERSION: &str = "medalign-llm-cache/1";

/// What the reply must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyFormat {
    /// Free text.
    Text,
    /// A JSON object (`response_format: {"type": "json_object"}` on endpoints).
    Json,
    /// Local only: the probabilities of the next token being `1`..`5`, as a JSON list.
    ScoreDistribution,
}

/// One chat request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far; the model writes the next assistant turn.
    pub messages: Vec<Message>,
    /// How tokens are chosen (the model crate's params; the seed goes to endpoints as `seed`).
    pub sampling: SamplingParams,
    /// At most this many new tokens.
    pub max_tokens: u32,
    /// What the reply must look like.
    pub format: ReplyFormat,
}

/// One answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    /// The assistant's text.
    pub text: String,
    /// Prompt tokens, as the backend counted them.
    pub prompt_tokens: Option<u64>,
    /// Generated tokens.
    pub completion_tokens: Option<u64>,
    /// `stop`, `length`, `eos`, ... as the backend said it.
    pub finish_reason: Option<String>,
}

/// The hex BLAKE3 cache key of a request sent to the backend named `identity`.
pub fn cache_key(identity: &str, req: &ChatRequest) -> String {
    let mut h = blake3::Hasher::new();
    let mut put = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    put(CACHE_VERSION.as_bytes());
    put(identity.as_bytes());
    put(&(req.messages.len() as u64).to_le_bytes());
    for m in &req.messages {
        put(m.role.as_bytes());
        put(m.content.as_bytes());
    }
    let s = &req.sampling;
    put(&float_bits(s.temperature));
    put(&s.top_p.map(float_bits).unwrap_or([0xff; 8]));
    put(&req.max_tokens.to_le_bytes());
    put(&s.seed.to_le_bytes());
    put(match req.format {
        ReplyFormat::Text => b"text",
        ReplyFormat::Json => b"json",
        ReplyFormat::ScoreDistribution => b"score_distribution",
    });
    // Only when set, so that the keys of requests without them stay as they were.
    if let Some(k) = s.top_k {
        put(b"top_k");
        put(&(k as u64).to_le_bytes());
    }
    if s.repetition_penalty != 1.0 {
        put(b"repetition_penalty");
        put(&float_bits(s.repetition_penalty));
    }
    h.finalize().to_hex().to_string()
}

/// Canonical bytes of a float: `-0.0` becomes `0.0`, every NaN the same NaN.
fn float_bits(x: f64) -> [u8; 8] {
    let x = if x == 0.0 {
        0.0
    } else if x.is_nan() {
        f64::NAN
    } else {
        x
    };
    x.to_bits().to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(temp: f64) -> ChatRequest {
        ChatRequest {
            messages: vec![Message::new("user", "Is aspirin an NSAID?")],
            sampling: SamplingParams { temperature: temp, seed: 1, ..Default::default() },
            max_tokens: 64,
            format: ReplyFormat::Text,
        }
    }

    #[test]
    fn key_sees_every_ingredient_and_no_more() {
        let k = cache_key("openai:http://x/v1:m", &req(0.0));
        assert_eq!(k, cache_key("openai:http://x/v1:m", &req(-0.0)));
        assert_ne!(k, cache_key("openai:http://x/v1:m", &req(0.5)));
        assert_ne!(k, cache_key("openai:http://x/v1:other", &req(0.0)));
        let mut r = req(0.0);
        r.messages[0].content.push('!');
        assert_ne!(k, cache_key("openai:http://x/v1:m", &r));
        let mut r = req(0.0);
        r.format = ReplyFormat::Json;
        assert_ne!(k, cache_key("openai:http://x/v1:m", &r));
        let mut r = req(0.0);
        r.sampling.top_k = Some(40);
        assert_ne!(k, cache_key("openai:http://x/v1:m", &r));
        let mut r = req(0.0);
        r.sampling.repetition_penalty = 1.1;
        assert_ne!(k, cache_key("openai:http://x/v1:m", &r));
        // Moving text between role and content changes the key (length prefixes).
        let mut r = req(0.0);
        r.messages = vec![Message::new("use", "rIs aspirin an NSAID?")];
        assert_ne!(k, cache_key("openai:http://x/v1:m", &r));
    }
}
