//! Secrets kept out of every message: values registered here (API keys read from the environment)
//! and any `Bearer <token>` are replaced by `[REDACTED]` in errors, summaries and log lines.

use std::sync::RwLock;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this are not registered: replacing a two-letter "key" everywhere would
/// garble messages without protecting anything.
const MIN_SECRET_LEN: usize = 6;

/// Bearer tokens shorter than this are taken for words.
const MIN_TOKEN_LEN: usize = 8;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers a secret of this process (an API key the run uses), so no message shows it.
pub fn register_secret(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        // Longest first, so a key that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret and every `Bearer` token replaced by [`REDACTED`].
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for s in SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    redact_bearer(&out)
}

/// Replaces the token after each `Bearer ` (any case), up to the next whitespace, quote or comma,
/// when it is long enough to be a credential ([`MIN_TOKEN_LEN`] characters), so prose survives.
fn redact_bearer(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find("bearer") {
        let start = from + found;
        let after = start + "bearer".len();
        let token_start = after + text[after..].len()
            - text[after..].trim_start_matches([' ', '\t', ':', '=']).len();
        let token_len = text[token_start..]
            .find(|c: char| c.is_whitespace() || "\"',;)}]".contains(c))
            .unwrap_or(text.len() - token_start);
        if token_start > after
            && token_len >= MIN_TOKEN_LEN
            && !text[token_start..].starts_with(REDACTED)
        {
            out.push_str(&text[rest..token_start]);
            out.push_str(REDACTED);
            rest = token_start + token_len;
        }
        from = (token_start + token_len).max(after);
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_bearer_tokens_are_replaced() {
        register_secret("sk-test-REDACT-ME-123");
        let msg = r#"POST http://x/v1/chat/completions: HTTP 401: {"error": "bad key sk-test-REDACT-ME-123", "hint": "Authorization: Bearer sk-other-456"}"#;
        assert_eq!(
            redact(msg),
            r#"POST http://x/v1/chat/completions: HTTP 401: {"error": "bad key [REDACTED]", "hint": "Authorization: Bearer [REDACTED]"}"#
        );
        assert_eq!(
            redact("authorization: bearer abc.def.ghi, next"),
            "authorization: bearer [REDACTED], next"
        );
        assert_eq!(
            redact("a bearer of bad news"),
            "a bearer of bad news",
            "short words are not tokens"
        );
        assert_eq!(redact("no secrets here: Bearer"), "no secrets here: Bearer");
        assert_eq!(redact(&redact(msg)), redact(msg), "redacting twice changes nothing");
    }

    #[test]
    fn short_values_are_not_registered() {
        register_secret("ab");
        assert_eq!(redact("about abc"), "about abc");
    }
}
