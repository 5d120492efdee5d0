//! The one error type of the LLM clients. No variant ever carries an API key: messages name the
//! environment variable, the URL and the status, and at most a short excerpt of the server's body.

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// The environment variable that should hold the API key is unset or empty.
    #[error("the API key environment variable {var} is not set (the manifest names it in `api_key_env`)")]
    MissingApiKey {
        /// Its name.
        var: String,
    },
    /// The server refused the request with a status that retrying will not change.
    #[error("POST {url}: HTTP {status}: {body}")]
    Status {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Every attempt failed with a retryable error.
    #[error("POST {url}: gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted {
        /// The endpoint.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A failure that retrying cannot fix (bad URL, TLS setup).
    #[error("POST {url}: {message}")]
    Transport {
        /// The endpoint.
        url: String,
        /// What failed.
        message: String,
    },
    /// The backend cannot do what was asked (e.g. score distributions over HTTP).
    #[error("{0}")]
    Unsupported(String),
    /// The in-process model failed.
    #[error("local model: {0}")]
    Local(String),
    /// The reply cache could not be written.
    #[error("reply cache: {0}")]
    Cache(String),
}

/// The first `max` characters of a body, on one line, for error messages, with API keys and bearer
/// tokens redacted (servers echo them in 401 bodies).
pub fn excerpt(body: &str, max: usize) -> String {
    let one_line: String = body.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let one_line = medalign_engine::redact(&one_line);
    let mut out: String = one_line.trim().chars().take(max).collect();
    if one_line.trim().chars().count() > max {
        out.push_str("...");
    }
    out
}
