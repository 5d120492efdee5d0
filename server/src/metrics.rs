//! Server metrics in the Prometheus text exposition format (version 0.0.4): request counts by
//! route and status, request and first-token latency histograms, token counters, tokens/s of
//! the last decode step, decode steps and the time spent in them, queue depth and active sequences.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Every metric the server keeps; shared by the HTTP handlers and the model thread.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    first_token: Mutex<Histogram>,
    queue_depth: AtomicUsize,
    active: AtomicUsize,
    generated_tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    reused_tokens: AtomicU64,
    finished: AtomicU64,
    cancelled: AtomicU64,
    decode_steps: AtomicU64,
    /// Nanoseconds the model thread spent in batched steps.
    decode_nanos: AtomicU64,
    /// Tokens/s of the last decode step, as f64 bits.
    tokens_per_second: AtomicU64,
}

impl Metrics {
    /// A request to `route` answered with `status` after `elapsed`.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route.to_string(), status))
            .or_default() += 1;
        self.latency
            .lock()
            .expect("metrics lock")
            .entry(route.to_string())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// A generation request was queued.
    pub fn enqueued(&self) {
        self.queue_depth.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` requests left the queue for the batch.
    pub fn dequeued(&self, n: usize) {
        let _ = self
            .queue_depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(n)));
    }

    /// Requests waiting for the model thread.
    pub fn queue_depth(&self) -> usize {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// A prefill of `tokens` positions.
    pub fn prefill(&self, tokens: usize, _elapsed: Duration) {
        self.prompt_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// A prompt that starts from `tokens` positions copied from an earlier prompt's cache.
    pub fn prefix_reused(&self, tokens: usize) {
        self.reused_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
    }

    /// The first token of a request, `latency` after it was queued.
    pub fn first_token(&self, latency: Duration) {
        self.first_token.lock().expect("metrics lock").observe(latency.as_secs_f64());
    }

    /// One decode step that produced `tokens` in `elapsed`, leaving `active` sequences.
    pub fn decode_step(&self, tokens: usize, elapsed: Duration, active: usize) {
        self.generated_tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        self.decode_steps.fetch_add(1, Ordering::Relaxed);
        self.decode_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.active.store(active, Ordering::Relaxed);
        let tps = tokens as f64 / elapsed.as_secs_f64().max(1e-9);
        self.tokens_per_second.store(tps.to_bits(), Ordering::Relaxed);
    }

    /// A sequence finished normally after `tokens` tokens.
    pub fn request_finished(&self, _tokens: usize) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// A sequence was dropped (client gone or model error).
    pub fn request_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP medalign_requests_total HTTP requests by route and status.\n# TYPE medalign_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "medalign_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP medalign_request_duration_seconds HTTP request latency (streams: until the last byte is queued).\n# TYPE medalign_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().expect("metrics lock").iter() {
            h.render(&mut out, "medalign_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out.push_str("# HELP medalign_first_token_seconds Time from queueing to the first generated token.\n# TYPE medalign_first_token_seconds histogram\n");
        self.first_token.lock().expect("metrics lock").render(
            &mut out,
            "medalign_first_token_seconds",
            "",
        );
        let scalars: [(&str, &str, &str, f64); 10] = [
            (
                "medalign_queue_depth",
                "gauge",
                "Requests waiting to join the batch.",
                self.queue_depth() as f64,
            ),
            (
                "medalign_active_sequences",
                "gauge",
                "Sequences in the decoding batch.",
                self.active.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_generated_tokens_total",
                "counter",
                "Tokens generated.",
                self.generated_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_prefill_tokens_total",
                "counter",
                "Positions prefilled (prompts and recomputed histories).",
                self.prompt_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_prefix_cache_reused_tokens_total",
                "counter",
                "Prompt positions copied from an earlier prompt's cache instead of computed.",
                self.reused_tokens.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_sequences_finished_total",
                "counter",
                "Sequences that ended normally.",
                self.finished.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_sequences_cancelled_total",
                "counter",
                "Sequences dropped (client gone or model error).",
                self.cancelled.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_decode_steps_total",
                "counter",
                "Batched decode steps.",
                self.decode_steps.load(Ordering::Relaxed) as f64,
            ),
            (
                "medalign_decode_seconds_total",
                "counter",
                "Time the model thread spent in batched decode steps.",
                self.decode_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            ),
            (
                "medalign_tokens_per_second",
                "gauge",
                "Tokens/s of the last decode step, all sequences together.",
                f64::from_bits(self.tokens_per_second.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("/v1/chat/completions", 200, Duration::from_millis(30));
        m.request("/v1/chat/completions", 400, Duration::from_millis(1));
        m.decode_step(4, Duration::from_millis(100), 4);
        let text = m.render();
        assert!(
            text.contains(
                "medalign_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("medalign_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.05\"} 2"), "{text}");
        assert!(text.contains("medalign_request_duration_seconds_bucket{route=\"/v1/chat/completions\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("medalign_tokens_per_second 40"), "{text}");
        assert!(text.contains("medalign_generated_tokens_total 4"), "{text}");
        assert!(text.contains("medalign_decode_seconds_total 0.1\n"), "{text}");
    }
}
