//! The OpenAI-compatible client against a fault-injecting server on loopback: retries on 429 (after
//! Retry-After), 500, timeouts and malformed bodies; no retry on 400; the reply cache; the
//! concurrency bound; the API key sent but never stored, nor shown in errors.

mod fake_llm;

use medalign_model::SamplingParams;
use std::time::{Duration, Instant};

use fake_llm::{last_user, FakeLlm, Fault};
use medalign_stages::kinds::examples::Message;
use medalign_stages::llm::{
    BackendConfig, BackendKind, ChatRequest, LlmError, ReplyCache, ReplyFormat,
};

fn config(server: &FakeLlm) -> BackendConfig {
    BackendConfig {
        backend: BackendKind::Openai,
        model: "fake-1".into(),
        base_url: Some(server.base_url.clone()),
        timeout_secs: 0.5,
        max_retries: 4,
        backoff_ms: 10,
        max_backoff_ms: 40,
        ..Default::default()
    }
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![Message::new("user", text)],
        sampling: SamplingParams { seed: 7, ..Default::default() },
        max_tokens: 32,
        format: ReplyFormat::Text,
    }
}

fn echo() -> FakeLlm {
    FakeLlm::start(|r| format!("echo: {}", last_user(r)))
}

#[test]
fn every_transient_fault_is_retried_until_answered() {
    let server = echo();
    server.push_faults([
        Fault::ServerError,
        Fault::Malformed,
        Fault::Slow(Duration::from_millis(1500)),
        Fault::ServerError,
    ]);
    let backend = config(&server).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let replies = backend.complete_all(&[request("a")], &ReplyCache::new(dir.path()), &|_| {});
    assert_eq!(replies[0].as_ref().unwrap().text, "echo: a");
    assert_eq!(server.requests(), 5, "four faults, then the answer");
}

#[test]
fn rate_limits_wait_at_least_retry_after() {
    let server = echo();
    server.push_faults([Fault::RateLimit("1")]);
    let backend = config(&server).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let replies = backend.complete_all(&[request("b")], &ReplyCache::new(dir.path()), &|_| {});
    assert_eq!(replies[0].as_ref().unwrap().text, "echo: b");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited only {:?} (backoff alone is 40 ms)",
        start.elapsed()
    );
    assert_eq!(server.requests(), 2);
}

#[test]
fn client_errors_fail_at_once_and_retries_run_out() {
    let server = echo();
    server.push_faults([Fault::BadRequest]);
    let backend = config(&server).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = ReplyCache::new(dir.path());
    let r = backend.complete_all(&[request("c")], &cache, &|_| {});
    match &r[0] {
        Err(LlmError::Status { status: 400, body, .. }) => assert!(body.contains("bad model")),
        other => panic!("expected a 400 error, got {other:?}"),
    }
    assert_eq!(server.requests(), 1, "a 400 is not retried");
    server.push_faults(std::iter::repeat_n(Fault::ServerError, 5));
    let r = backend.complete_all(&[request("d")], &cache, &|_| {});
    let err = r[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("gave up after 5 attempts") && err.contains("HTTP 500"), "{err}");
    assert_eq!(server.requests(), 6);
    // Failures are not cached: the next run asks again and gets the answer.
    let r = backend.complete_all(&[request("d")], &cache, &|_| {});
    assert_eq!(r[0].as_ref().unwrap().text, "echo: d");
}

#[test]
fn cache_answers_a_rerun_and_sends_nothing() {
    let server = echo();
    let backend = config(&server).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reqs: Vec<ChatRequest> = (0..12).map(|i| request(&format!("q{}", i % 10))).collect();
    let first = backend.complete_all(&reqs, &ReplyCache::new(dir.path()), &|_| {});
    assert_eq!(server.requests(), 10, "two duplicate requests are sent once");
    let cache = ReplyCache::new(dir.path());
    let again = backend.complete_all(&reqs, &cache, &|_| {});
    assert_eq!(server.requests(), 10, "a rerun sends nothing");
    assert_eq!((cache.hits(), cache.misses()), (10, 0));
    assert_eq!(first, again);
    let mut hotter = request("q1");
    hotter.sampling.temperature = 0.7;
    backend.complete_all(&[hotter], &cache, &|_| {});
    assert_eq!(server.requests(), 11, "other sampling params are another request");
}

#[test]
fn concurrency_is_bounded() {
    let server = FakeLlm::start(|r| {
        std::thread::sleep(Duration::from_millis(50));
        last_user(r)
    });
    let mut cfg = config(&server);
    cfg.concurrency = 3;
    let backend = cfg.build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let reqs: Vec<ChatRequest> = (0..12).map(|i| request(&i.to_string())).collect();
    let replies = backend.complete_all(&reqs, &ReplyCache::new(dir.path()), &|_| {});
    let texts: Vec<String> = replies.into_iter().map(|r| r.unwrap().text).collect();
    assert_eq!(
        texts,
        (0..12).map(|i| i.to_string()).collect::<Vec<_>>(),
        "answers come back in request order"
    );
    assert_eq!(server.requests(), 12);
    assert!(server.max_in_flight() <= 3, "max in flight {}", server.max_in_flight());
    assert!(server.max_in_flight() >= 2, "requests ran one at a time");
}

#[test]
fn api_key_goes_in_the_header_and_nowhere_else() {
    let server = echo();
    let var = "MEDALIGN_TEST_KEY_LLM_CLIENT";
    let mut cfg = config(&server);
    cfg.api_key_env = Some(var.into());
    match cfg.build() {
        Err(e) => assert_eq!(e, LlmError::MissingApiKey { var: var.into() }),
        Ok(_) => panic!("an unset key variable must be an error"),
    }
    std::env::set_var(var, "sk-secret-123");
    let backend = cfg.build().unwrap();
    assert!(!backend.identity().contains("sk-secret"));
    let dir = tempfile::tempdir().unwrap();
    backend.complete_all(&[request("e")], &ReplyCache::new(dir.path()), &|_| {});
    assert_eq!(server.auth_headers(), vec![Some("Bearer sk-secret-123".to_string())]);
    assert_eq!(server.bodies()[0]["model"], "fake-1");
    for entry in walk(dir.path()) {
        assert!(
            !std::fs::read_to_string(&entry).unwrap().contains("sk-secret"),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn a_key_echoed_in_an_error_body_is_redacted() {
    let server = echo();
    let var = "MEDALIGN_TEST_KEY_ECHOED";
    std::env::set_var(var, "sk-echoed-secret-789");
    let mut cfg = config(&server);
    cfg.api_key_env = Some(var.into());
    let backend = cfg.build().unwrap();
    server.push_faults([Fault::EchoAuth]);
    let dir = tempfile::tempdir().unwrap();
    let r = backend.complete_all(&[request("f")], &ReplyCache::new(dir.path()), &|_| {});
    let err = r[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("HTTP 401"), "{err}");
    assert!(!err.contains("sk-echoed-secret-789"), "{err}");
    assert!(err.contains(r#"invalid key [REDACTED]","got":"Bearer [REDACTED]""#), "{err}");
}

#[test]
fn a_hanging_endpoint_names_its_url_attempts_and_timeout() {
    let server = echo();
    server.push_faults(std::iter::repeat_n(Fault::Slow(Duration::from_millis(1200)), 5));
    let backend = config(&server).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let r = backend.complete_all(&[request("g")], &ReplyCache::new(dir.path()), &|_| {});
    let err = r[0].as_ref().unwrap_err().to_string();
    let url = format!("{}/chat/completions", server.base_url);
    assert_eq!(err, format!("POST {url}: gave up after 5 attempts; last error: no reply within the 0.5 s timeout (timeout_secs)"));
}
