//! `medalign bench serve`: aggregate tokens/s of N concurrent streaming clients against one
//! stream, first-token latency percentiles, and a check that every stream got its own answer
//! (greedy answers, or sampled ones with a seed, under load equal the same prompts answered one
//! at a time).
//!
//! Three phases, each on its own questions (of the same form, about different conditions):
//! - one client asks its questions one after another (the single stream);
//! - a burst: N clients ask at the same moment, once;
//! - sustained: N clients each ask `--rounds` questions back to back, so N requests are in
//!   flight throughout (the closed loop of vLLM's `benchmark_serving --max-concurrency N`, or
//!   of load tools' `-c N`). A burst ends with fewer and fewer rows as answers reach EOS at
//!   different lengths; the sustained phase refills the batch as requests finish.
//!
//! Each phase reuses only the prefix its prompts share (the chat template's system turn and
//! the question's opening), never a whole earlier prompt, while there are topics enough
//! ([`TOPICS`]; beyond, they repeat and only the case number differs). The one-at-a-time
//! answers that the concurrent ones are checked against come last: they reuse the concurrent
//! prompts' caches whole, which checks that reuse does not change an answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};

use crate::client::stream;
use crate::error::ServeError;
use crate::{served, start, ServerOptions};

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
    #[arg(long, env = "MEDALIGN_STORE", default_value = medalign_registry::DEFAULT_STORE)]
    pub store: std::path::PathBuf,
    /// MiB of prompt caches the server keeps for prefix reuse (as `serve`; 0 turns reuse off).
    #[arg(long, default_value_t = crate::prefix_cache::DEFAULT_MB)]
    pub prefix_cache_mb: usize,
    /// Questions each client asks back to back in the sustained phase.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Sampling temperature of every question (0: greedy; OpenAI's default is 1). Each question
    /// carries the same seed, so a sampled answer under load must still equal its one-at-a-time
    /// answer.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// What every client asks, `{topic}` standing for a condition. The default asks for two
    /// sentences; ask for more (with a larger `--max-tokens`) to measure longer answers.
    #[arg(long, default_value = DEFAULT_QUESTION)]
    pub question: String,
}

/// What every question of the benchmark asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The question, `{topic}` standing for the condition asked about.
    pub question: &'a str,
    /// Most tokens an answer generates.
    pub max_tokens: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
}

/// The seed every question carries.
const SEED: u64 = 7;

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

/// Figures of the streams of one concurrent phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseReport {
    /// Tokens/s of all streams together: their tokens over the phase's wall time.
    pub tokens_per_s: f64,
    /// First-token latency percentiles (ms).
    pub first_token_p50_ms: f64,
    /// 99th percentile (ms).
    pub first_token_p99_ms: f64,
    /// Streams.
    pub streams: usize,
    /// Streams that ended with `[DONE]` and full usage.
    pub complete_streams: usize,
    /// Streams whose answer equals the one-at-a-time answer to the same prompt.
    pub matching_streams: usize,
    /// Mean prompt tokens the server reused from its prefix cache.
    pub cached_tokens: f64,
    /// The server's steps in the phase, from its metrics.
    pub steps: StepFigures,
}

/// What the model thread's steps did in a phase (from `/metrics`): the phase's tokens/s is
/// `tokens_per_step / step_ms` times `busy`, which tells a batch that runs short of rows from
/// steps that cost more.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct StepFigures {
    /// Tokens generated per step (a full batch of N clients: N).
    pub tokens_per_step: f64,
    /// Mean time of a step (ms).
    pub step_ms: f64,
    /// The share of the phase's wall time spent in steps.
    pub busy: f64,
}

/// The server's running totals that [`StepFigures`] are differences of.
#[derive(Debug, Clone, Copy)]
struct Totals {
    tokens: f64,
    steps: f64,
    seconds: f64,
}

impl Totals {
    /// Reads them from the server's `/metrics`.
    fn read(addr: SocketAddr) -> Result<Totals, ServeError> {
        let text = crate::client::request(addr, "GET", "/metrics", b"", &[])
            .map_err(|e| ServeError::Io(e.to_string()))?
            .body;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(name)
                        .and_then(|v| v.strip_prefix(' '))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
                .ok_or_else(|| ServeError::Io(format!("the server's /metrics has no {name}")))
        };
        Ok(Totals {
            tokens: value("medalign_generated_tokens_total")?,
            steps: value("medalign_decode_steps_total")?,
            seconds: value("medalign_decode_seconds_total")?,
        })
    }

    /// The figures of the steps between `self` and `later`, over `wall`.
    fn until(self, later: Totals, wall: Duration) -> StepFigures {
        let steps = (later.steps - self.steps).max(1.0);
        let seconds = later.seconds - self.seconds;
        StepFigures {
            tokens_per_step: (later.tokens - self.tokens) / steps,
            step_ms: seconds / steps * 1e3,
            busy: seconds / wall.as_secs_f64(),
        }
    }
}

/// The benchmark's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Tokens/s of one stream alone.
    pub single_tokens_per_s: f64,
    /// Mean prompt tokens the server reused in the single-stream phase.
    pub single_cached_tokens: f64,
    /// The server's steps in the single-stream phase.
    pub single_steps: StepFigures,
    /// Mean prompt tokens per request.
    pub prompt_tokens: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// All clients asking once at the same moment.
    pub burst: PhaseReport,
    /// Every client asking `rounds` questions back to back.
    pub sustained: PhaseReport,
    /// Questions per client in the sustained phase.
    pub rounds: usize,
    /// Sampling temperature of every question.
    pub temperature: f64,
}

/// The conditions the questions ask about: 2 phases of `clients` questions and `rounds` of
/// `clients` more, all different at the defaults (8 clients, 3 rounds: 40).
const TOPICS: [&str; 48] = [
    "asthma",
    "diabetes",
    "migraine",
    "anemia",
    "sepsis",
    "gout",
    "eczema",
    "angina",
    "psoriasis",
    "lupus",
    "rickets",
    "tetanus",
    "cholera",
    "vertigo",
    "bronchitis",
    "hepatitis",
    "glaucoma",
    "shingles",
    "scabies",
    "malaria",
    "tuberculosis",
    "pneumonia",
    "appendicitis",
    "cellulitis",
    "sinusitis",
    "tonsillitis",
    "conjunctivitis",
    "osteoporosis",
    "scoliosis",
    "sciatica",
    "bursitis",
    "tendinitis",
    "cystitis",
    "pancreatitis",
    "gastritis",
    "hemorrhoids",
    "hypothyroidism",
    "hyperthyroidism",
    "endometriosis",
    "preeclampsia",
    "meningitis",
    "encephalitis",
    "epilepsy",
    "narcolepsy",
    "insomnia",
    "acne",
    "rosacea",
    "measles",
];

/// What the benchmark's clients ask unless told otherwise: two sentences, some 40-60 tokens.
pub const DEFAULT_QUESTION: &str = "In two sentences, what is {topic} and how is it treated?";

impl Ask<'_> {
    /// Question `i`: [`Ask::question`] about topic `i` (of [`TOPICS`]), numbered.
    fn prompt(&self, i: usize) -> String {
        format!("{} (case {i})", self.question.replace("{topic}", TOPICS[i % TOPICS.len()]))
    }
}

/// Streams one chat completion and times it.
pub fn stream_chat(
    addr: SocketAddr,
    model: &str,
    prompt: &str,
    ask: Ask<'_>,
) -> Result<StreamResult, ServeError> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": ask.max_tokens,
        "temperature": ask.temperature, "seed": SEED, "stream": true, "stream_options": {"include_usage": true}});
    let started = Instant::now();
    let mut res = StreamResult {
        text: String::new(),
        tokens: 0,
        first_token: Duration::ZERO,
        done: false,
        prompt_tokens: 0,
        cached_tokens: 0,
    };
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
            res.cached_tokens =
                v["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0) as usize;
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

/// Runs `rounds` back-to-back streams on each of `clients` threads at once, client `c`'s
/// round `r` asking question `first + r * clients + c`; returns the streams in question order
/// and the wall time.
fn concurrent(
    addr: SocketAddr,
    model: &str,
    first: usize,
    clients: usize,
    rounds: usize,
    ask: Ask<'_>,
) -> Result<(Vec<StreamResult>, Duration), ServeError> {
    let t = Instant::now();
    let per_client: Vec<Result<Vec<StreamResult>, ServeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    (0..rounds)
                        .map(|r| {
                            stream_chat(addr, model, &ask.prompt(first + r * clients + c), ask)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(ServeError::Io("client panicked".into()))))
            .collect()
    });
    let wall = t.elapsed();
    let mut per_client = per_client.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut streams = Vec::with_capacity(clients * rounds);
    for r in 0..rounds {
        for c in per_client.iter_mut() {
            streams.push(c[r].clone());
        }
    }
    Ok((streams, wall))
}

/// The figures of one concurrent phase, its streams checked against `references`.
fn phase(
    streams: &[StreamResult],
    wall: Duration,
    references: &[String],
    steps: StepFigures,
) -> PhaseReport {
    let mut firsts: Vec<f64> = streams.iter().map(|r| r.first_token.as_secs_f64() * 1e3).collect();
    firsts.sort_by(f64::total_cmp);
    PhaseReport {
        tokens_per_s: streams.iter().map(|r| r.tokens).sum::<usize>() as f64 / wall.as_secs_f64(),
        first_token_p50_ms: percentile(&firsts, 50.0),
        first_token_p99_ms: percentile(&firsts, 99.0),
        streams: streams.len(),
        complete_streams: streams.iter().filter(|r| r.done && r.tokens > 0).count(),
        matching_streams: streams
            .iter()
            .zip(references)
            .filter(|(r, want)| &r.text == *want)
            .count(),
        cached_tokens: streams.iter().map(|r| r.cached_tokens).sum::<usize>() as f64
            / streams.len().max(1) as f64,
        steps,
    }
}

/// Runs the benchmark against a server at `addr` serving `model`.
pub fn measure(
    addr: SocketAddr,
    model: &str,
    clients: usize,
    rounds: usize,
    ask: Ask<'_>,
) -> Result<BenchReport, ServeError> {
    // Warm-up, then one stream at a time, then the burst, then the sustained phase.
    stream_chat(addr, model, "Hello, who are you?", Ask { max_tokens: 4, ..ask })?;
    let mut single = Vec::with_capacity(clients);
    let before = Totals::read(addr)?;
    let t = Instant::now();
    for i in 0..clients {
        single.push(stream_chat(addr, model, &ask.prompt(i), ask)?);
    }
    let single_time = t.elapsed();
    let after_single = Totals::read(addr)?;
    let (burst, burst_wall) = concurrent(addr, model, clients, clients, 1, ask)?;
    let after_burst = Totals::read(addr)?;
    let (sustained, sustained_wall) = concurrent(addr, model, 2 * clients, clients, rounds, ask)?;
    let after_sustained = Totals::read(addr)?;
    let references = (clients..clients * (2 + rounds))
        .map(|i| Ok(stream_chat(addr, model, &ask.prompt(i), ask)?.text))
        .collect::<Result<Vec<_>, ServeError>>()?;
    let all = || single.iter().chain(&burst).chain(&sustained);
    Ok(BenchReport {
        single_tokens_per_s: single.iter().map(|r| r.tokens).sum::<usize>() as f64
            / single_time.as_secs_f64(),
        single_cached_tokens: single.iter().map(|r| r.cached_tokens).sum::<usize>() as f64
            / clients as f64,
        single_steps: before.until(after_single, single_time),
        prompt_tokens: all().map(|r| r.prompt_tokens).sum::<usize>() as f64 / all().count() as f64,
        clients,
        burst: phase(
            &burst,
            burst_wall,
            &references[..clients],
            after_single.until(after_burst, burst_wall),
        ),
        sustained: phase(
            &sustained,
            sustained_wall,
            &references[clients..],
            after_burst.until(after_sustained, sustained_wall),
        ),
        rounds,
        temperature: ask.temperature,
    })
}

/// `medalign bench serve`: serves the model on a free loopback port and measures it.
pub fn run(args: &BenchServeArgs) -> Result<BenchReport, ServeError> {
    if !args.question.contains("{topic}") {
        return Err(ServeError::Args(format!(
            "--question {:?}: put {{topic}} where the condition goes",
            args.question
        )));
    }
    let model = served::load(&args.model, &args.store)?;
    let id = model.id.clone();
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| ServeError::Io(e.to_string()))?;
    let opts = ServerOptions {
        max_batch: args.clients.max(1),
        prefix_cache_bytes: args.prefix_cache_mb << 20,
        ..ServerOptions::default()
    };
    let server = start(model, listener, opts)?;
    let ask = Ask {
        question: &args.question,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
    };
    let report = measure(server.addr, &id, args.clients, args.rounds.max(1), ask);
    server.stop()?;
    let r = report?;
    let ratio = |p: &PhaseReport| p.tokens_per_s / r.single_tokens_per_s;
    let steps = |s: &StepFigures| {
        format!(
            "{:.2} tokens a step of {:.2} ms, busy {:.0}%",
            s.tokens_per_step,
            s.step_ms,
            s.busy * 100.0
        )
    };
    let line = |name: &str, p: &PhaseReport| {
        format!(
            "{name}: {:.1} tok/s ({:.2}x; {}), first token p50 {:.0} ms, p99 {:.0} ms, {}/{} streams complete, {}/{} equal to their one-at-a-time answer, {:.1} prompt tokens reused",
            p.tokens_per_s,
            ratio(p),
            steps(&p.steps),
            p.first_token_p50_ms,
            p.first_token_p99_ms,
            p.complete_streams,
            p.streams,
            p.matching_streams,
            p.streams,
            p.cached_tokens
        )
    };
    eprintln!(
        "serve bench ({id}, temperature {}): 1 stream {:.1} tok/s ({}); {} clients {}; {}; prompts of {:.1} tokens, {:.1} reused alone",
        r.temperature,
        r.single_tokens_per_s,
        steps(&r.single_steps),
        r.clients,
        line("burst", &r.burst),
        line(&format!("sustained ({} rounds)", r.rounds), &r.sustained),
        r.prompt_tokens,
        r.single_cached_tokens
    );
    Ok(r)
}
