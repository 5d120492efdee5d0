//! `medalign bench serve`: aggregate tokens/s of N concurrent streaming clients against one
//! stream, first-token latency percentiles, and a check that every stream got its own answer
//! (greedy answers under load equal the same prompts answered one at a time).
//!
//! The single stream and the concurrent clients ask questions of the same form about different
//! conditions (with up to 8 clients; beyond, the topics repeat and only the case number differs),
//! so each phase reuses only the prefix its prompts share (the chat template's
//! system turn and the question's opening), never a whole earlier prompt. The one-at-a-time
//! answers that the concurrent ones are checked against come last: they reuse the concurrent
//! prompts' caches whole, which checks that reuse does not change an answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::client::stream;
use crate::error::ServeError;
use crate::{source, start, ServerOptions};

/// Measure the server.
#[derive(Args, Debug, Clone)]
pub struct BenchServeArgs {
    /// The model to serve (as for `medalign serve --model`).
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Concurrent streaming clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Most tokens each answer generates (an answer may end earlier at EOS).
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// The store whose registry resolves model names.
    #[arg(long, env = "MEDALIGN_STORE", default_value = medalign_stages::register::cli::DEFAULT_STORE)]
    pub store: std::path::PathBuf,
    /// MiB of prompt caches the server keeps for prefix reuse (as `serve`; 0 turns reuse off).
    #[arg(long, default_value_t = 256)]
    pub prefix_cache_mb: usize,
}

/// One stream's figures.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// The text received.
    pub text: String,
    /// Tokens by the final usage chunk.
    pub tokens: usize,
    /// Time to the first content.
    pub first_token: Duration,
    /// Whether `[DONE]` arrived.
    pub done: bool,
    /// Prompt tokens, by the final usage chunk.
    pub prompt_tokens: usize,
    /// Of those, the ones the server reused from its prefix cache.
    pub cached_tokens: usize,
}

/// The benchmark's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Tokens/s of one stream alone.
    pub single_tokens_per_s: f64,
    /// Tokens/s of all concurrent streams together.
    pub concurrent_tokens_per_s: f64,
    /// First-token latency percentiles under load (ms).
    pub first_token_p50_ms: f64,
    /// 99th percentile (ms).
    pub first_token_p99_ms: f64,
    /// Streams that ended with `[DONE]` and full usage.
    pub complete_streams: usize,
    /// Streams whose greedy answer equals the one-at-a-time answer to the same prompt.
    pub matching_streams: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Mean prompt tokens per request, and of those the mean reused from the prefix cache, in
    /// the single-stream and the concurrent phase.
    pub prompt_tokens: f64,
    /// See `prompt_tokens`.
    pub single_cached_tokens: f64,
    /// See `prompt_tokens`.
    pub concurrent_cached_tokens: f64,
}

const TOPICS: [&str; 16] = [
    "asthma", "diabetes", "migraine", "anemia", "sepsis", "gout", "eczema", "angina", "psoriasis", "lupus", "rickets",
    "tetanus", "cholera", "vertigo", "bronchitis", "hepatitis",
];

fn prompt(i: usize) -> String {
    format!("In two sentences, what is {} and how is it treated? (case {i})", TOPICS[i % TOPICS.len()])
}

/// Streams one chat completion and times it.
pub fn stream_chat(addr: SocketAddr, model: &str, prompt: &str, max_tokens: usize) -> Result<StreamResult, ServeError> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let started = Instant::now();
    let mut res = StreamResult { text: String::new(), tokens: 0, first_token: Duration::ZERO, done: false, prompt_tokens: 0, cached_tokens: 0 };
    let mut first = None;
    stream(addr, "/v1/chat/completions", &body, &mut |data| {
        if data == "[DONE]" {
            res.done = true;
            return;
        }
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            if !t.is_empty() && first.is_none() {
                first = Some(started.elapsed());
            }
            res.text.push_str(t);
        }
        if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
            res.tokens = n as usize;
            res.prompt_tokens = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize;
            res.cached_tokens = v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0) as usize;
        }
    })
    .map_err(|e| ServeError::Io(e.to_string()))?;
    res.first_token = first.unwrap_or_else(|| started.elapsed());
    Ok(res)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark against a server at `addr` serving `model`.
pub fn measure(addr: SocketAddr, model: &str, clients: usize, max_tokens: usize) -> Result<BenchReport, ServeError> {
    // Warm-up, then one stream at a time on the other half of the questions.
    stream_chat(addr, model, "Hello, who are you?", 4)?;
    let mut single_tokens = 0;
    let mut single_cached = 0;
    let mut single_time = Duration::ZERO;
    for i in 0..clients {
        let t = Instant::now();
        let r = stream_chat(addr, model, &prompt(i + TOPICS.len() / 2), max_tokens)?;
        single_time += t.elapsed();
        single_tokens += r.tokens;
        single_cached += r.cached_tokens;
    }
    let t = Instant::now();
    let results: Vec<Result<StreamResult, ServeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients).map(|i| s.spawn(move || stream_chat(addr, model, &prompt(i), max_tokens))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(ServeError::Io("client panicked".into())))).collect()
    });
    let wall = t.elapsed();
    let results: Vec<StreamResult> = results.into_iter().collect::<Result<_, _>>()?;
    let references = (0..clients).map(|i| Ok(stream_chat(addr, model, &prompt(i), max_tokens)?.text)).collect::<Result<Vec<_>, ServeError>>()?;
    let mut firsts: Vec<f64> = results.iter().map(|r| r.first_token.as_secs_f64() * 1e3).collect();
    firsts.sort_by(f64::total_cmp);
    Ok(BenchReport {
        single_tokens_per_s: single_tokens as f64 / single_time.as_secs_f64(),
        concurrent_tokens_per_s: results.iter().map(|r| r.tokens).sum::<usize>() as f64 / wall.as_secs_f64(),
        first_token_p50_ms: percentile(&firsts, 50.0),
        first_token_p99_ms: percentile(&firsts, 99.0),
        complete_streams: results.iter().filter(|r| r.done && r.tokens > 0).count(),
        matching_streams: results.iter().zip(&references).filter(|(r, want)| &r.text == *want).count(),
        clients,
        prompt_tokens: results.iter().map(|r| r.prompt_tokens).sum::<usize>() as f64 / clients as f64,
        single_cached_tokens: single_cached as f64 / clients as f64,
        concurrent_cached_tokens: results.iter().map(|r| r.cached_tokens).sum::<usize>() as f64 / clients as f64,
    })
}

/// `medalign bench serve`: serves the model on a free loopback port and measures it.
pub fn run(args: &BenchServeArgs) -> Result<BenchReport, ServeError> {
    let model = source::load(&args.model, &args.store)?;
    let id = model.id.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ServeError::Io(e.to_string()))?;
    let opts = ServerOptions { max_batch: args.clients.max(1), prefix_cache_bytes: args.prefix_cache_mb << 20, ..ServerOptions::default() };
    let server = start(model, listener, opts)?;
    let report = measure(server.addr, &id, args.clients, args.max_tokens);
    server.stop()?;
    let r = report?;
    eprintln!(
        "serve bench ({}): 1 stream {:.1} tok/s; {} concurrent streams {:.1} tok/s ({:.2}x); first token p50 {:.0} ms, p99 {:.0} ms; {}/{} streams complete, {}/{} equal to their one-at-a-time answer; prompts of {:.1} tokens, {:.1} reused alone, {:.1} concurrently",
        id,
        r.single_tokens_per_s,
        r.clients,
        r.concurrent_tokens_per_s,
        r.concurrent_tokens_per_s / r.single_tokens_per_s,
        r.first_token_p50_ms,
        r.first_token_p99_ms,
        r.complete_streams,
        r.clients,
        r.matching_streams,
        r.clients,
        r.prompt_tokens,
        r.single_cached_tokens,
        r.concurrent_cached_tokens
    );
    Ok(r)
}
