//! One judge over a list of responses. `json` mode asks for every applicable metric at once and
//! validates the JSON, feeding a parse error back up to `parse_retries` times before recording the
//! failure with the raw answer; `distribution` mode reads each metric's score probabilities.

use crate::judge::rubric::{Better, MetricConfig, Template};
use crate::judge::verdict::{feedback, parse_distribution, parse_json_verdict, MetricScore};
use crate::kinds::candidates::Candidate;
use crate::kinds::examples::Message;
use crate::kinds::judgments::Judgment;
use crate::llm::{cache_key, Backend, ChatRequest, ReplyCache, ReplyFormat};
use medalign_model::SamplingParams;

/// What one judge needs besides the responses.
pub struct JudgeRun<'a> {
    /// The judge's name.
    pub name: &'a str,
    /// Its backend.
    pub backend: &'a Backend,
    /// The reply cache.
    pub cache: &'a ReplyCache,
    /// The rubric.
    pub metrics: &'a [MetricConfig],
    /// The user-turn template of its mode.
    pub template: &'a Template,
    /// The system turn (json mode).
    pub system: &'a str,
    /// Sampling of json-mode requests.
    pub sampling: SamplingParams,
    /// Token budget of json-mode requests.
    pub max_tokens: u32,
    /// Answers fed back after a parse error, at most.
    pub parse_retries: u32,
    /// Told how many responses were just judged.
    pub on_done: &'a (dyn Fn(u64) + Sync),
}

fn row(c: &Candidate, run: &JudgeRun<'_>, metric: &MetricConfig) -> Judgment {
    Judgment {
        candidate_id: c.id.clone(),
        prompt_id: c.prompt_id.clone(),
        task: c.task.clone(),
        generator: c.generator.clone(),
        judge: run.name.to_string(),
        judge_model: run.backend.identity(),
        metric: metric.name.clone(),
        better: match metric.better {
            Better::High => "high".into(),
            Better::Low => "low".into(),
        },
        ..Default::default()
    }
}

fn scored(mut j: Judgment, s: MetricScore, attempts: i64) -> Judgment {
    j.score = Some(s.score);
    j.expected = s.expected;
    j.rationale = Some(s.rationale);
    j.status = "ok".into();
    j.attempts = attempts;
    j
}

fn failed(mut j: Judgment, error: String, raw: Option<String>, attempts: i64) -> Judgment {
    j.status = "failed".into();
    j.error = Some(error);
    j.raw = raw;
    j.attempts = attempts;
    j
}

fn applicable<'m>(metrics: &'m [MetricConfig], c: &Candidate) -> Vec<&'m MetricConfig> {
    metrics.iter().filter(|m| m.applies(&c.task, c.reference.is_some())).collect()
}

/// Judges every response in `json` mode.
pub fn judge_json(run: &JudgeRun<'_>, responses: &[Candidate]) -> Result<Vec<Judgment>, String> {
    struct Pending<'m> {
        idx: usize,
        metrics: Vec<&'m MetricConfig>,
        messages: Vec<Message>,
        /// The cache keys of the requests sent for this response so far.
        sent: Vec<String>,
    }
    let identity = run.backend.identity();
    let mut pending = Vec::new();
    for (idx, c) in responses.iter().enumerate() {
        let metrics = applicable(run.metrics, c);
        if metrics.is_empty() {
            continue;
        }
        let user = run.template.render(
            &c.task,
            &c.messages,
            c.reference.as_deref(),
            c.response.as_deref().unwrap_or(""),
            &metrics,
        )?;
        let messages = vec![Message::new("system", run.system), Message::new("user", user)];
        pending.push(Pending { idx, metrics, messages, sent: Vec::new() });
    }
    (run.on_done)((responses.len() - pending.len()) as u64);
    let mut out = Vec::new();
    let mut attempts = 0i64;
    while !pending.is_empty() {
        attempts += 1;
        let reqs: Vec<ChatRequest> = pending
            .iter()
            .map(|p| ChatRequest {
                messages: p.messages.clone(),
                sampling: run.sampling.clone(),
                max_tokens: run.max_tokens,
                format: ReplyFormat::Json,
            })
            .collect();
        let replies = run.backend.complete_all(&reqs, run.cache, &|_| {});
        let mut next = Vec::new();
        for ((mut p, reply), req) in pending.into_iter().zip(replies).zip(&reqs) {
            p.sent.push(cache_key(&identity, req));
            let c = &responses[p.idx];
            let names: Vec<&str> = p.metrics.iter().map(|m| m.name.as_str()).collect();
            let verdict = reply.map_err(|e| (e.to_string(), None)).and_then(|r| {
                match parse_json_verdict(&r.text, &names) {
                    Ok(scores) => Ok(scores),
                    Err(why) => Err((why, Some(r.text))),
                }
            });
            match verdict {
                Ok(scores) => out.extend(
                    p.metrics.iter().zip(scores).map(|(m, s)| scored(row(c, run, m), s, attempts)),
                ),
                Err((why, Some(raw))) if attempts <= run.parse_retries as i64 => {
                    p.messages.push(Message::new("assistant", raw));
                    p.messages.push(Message::new("user", feedback(&why)));
                    next.push(p);
                    continue;
                }
                Err((why, raw)) => {
                    // Rejected replies are not answers: a rerun asks again instead of replaying them.
                    for key in &p.sent {
                        run.cache.forget(key)?;
                    }
                    out.extend(
                        p.metrics
                            .iter()
                            .map(|m| failed(row(c, run, m), why.clone(), raw.clone(), attempts)),
                    )
                }
            }
            (run.on_done)(1);
        }
        pending = next;
    }
    Ok(out)
}

/// Judges every response in `distribution` mode: one request per applicable metric.
pub fn judge_distribution(
    run: &JudgeRun<'_>,
    responses: &[Candidate],
) -> Result<Vec<Judgment>, String> {
    let mut jobs = Vec::new();
    let mut reqs = Vec::new();
    for c in responses {
        for m in applicable(run.metrics, c) {
            let user = run.template.render(
                &c.task,
                &c.messages,
                c.reference.as_deref(),
                c.response.as_deref().unwrap_or(""),
                &[m],
            )?;
            reqs.push(ChatRequest {
                messages: vec![Message::new("user", user)],
                sampling: SamplingParams::default(),
                max_tokens: 1,
                format: ReplyFormat::ScoreDistribution,
            });
            jobs.push((c, m));
        }
    }
    let per_response = (reqs.len() as f64 / responses.len().max(1) as f64).max(1.0);
    let done = std::sync::atomic::AtomicU64::new(0);
    let replies = run.backend.complete_all(&reqs, run.cache, &|n| {
        let before = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        let whole = |k: u64| (k as f64 / per_response) as u64;
        (run.on_done)(whole(before + n) - whole(before));
    });
    let identity = run.backend.identity();
    jobs.into_iter()
        .zip(replies)
        .zip(&reqs)
        .map(|(((c, m), reply), req)| {
            let j = row(c, run, m);
            match reply
                .map_err(|e| (e.to_string(), None))
                .and_then(|r| parse_distribution(&r.text).map_err(|e| (e, Some(r.text))))
            {
                Ok(s) => Ok(scored(j, s, 1)),
                Err((why, raw)) => {
                    if raw.is_some() {
                        run.cache.forget(&cache_key(&identity, req))?;
                    }
                    Ok(failed(j, why, raw, 1))
                }
            }
        })
        .collect()
}
