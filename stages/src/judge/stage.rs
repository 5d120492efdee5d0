//! The run of a `judge` stage: every response (a candidate, or an example's own reference answer)
//! is scored by every judge on the rubric; several judges add agreement statistics, written to
//! `agreement.json` beside the table and to the metrics.

use medalign_model::SamplingParams;
use std::time::Instant;

use medalign_engine::{RunContext, StageError};

use super::config::{JudgeConfig, JudgeMode};
use crate::judge::agreement::agreements;
use crate::judge::rubric::{JSON_TEMPLATE, SCORE_TEMPLATE};
use crate::judge::run::{judge_distribution, judge_json, JudgeRun};
use crate::kinds::candidates::read_responses;
use crate::kinds::judgments::write_judgments;
use crate::llm::{Backends, ReplyCache};

/// Runs a stage with params `cfg`.
pub fn run(cfg: &JudgeConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let check = cx.check_context().clone();
    let json_template = cfg.load_template(&check, &cfg.template, JSON_TEMPLATE)?;
    let score_template = cfg.load_template(&check, &cfg.score_template, SCORE_TEMPLATE)?;
    let mut responses = read_responses(cx.inputs("responses"))?;
    responses.truncate(cfg.limit.unwrap_or(usize::MAX));
    let cache = ReplyCache::new(cx.cache_dir("llm")?);
    let mut backends = Backends::for_stage(&check, None);
    let mut rows = Vec::new();
    let started = Instant::now();
    cx.progress().set_length((responses.len() * cfg.judges.len()) as u64);
    for j in &cfg.judges {
        cx.progress().set_message(format!("judge {}", j.name));
        let backend = backends.get(&j.llm).map_err(|e| format!("judge {:?}: {e}", j.name))?;
        let progress = cx.progress();
        let run = JudgeRun {
            name: &j.name,
            backend,
            cache: &cache,
            metrics: &cfg.metrics,
            template: if j.mode() == JudgeMode::Json { &json_template } else { &score_template },
            system: &cfg.system,
            sampling: SamplingParams {
                temperature: j.temperature,
                seed: cx.seed(),
                ..Default::default()
            },
            max_tokens: j.max_tokens,
            parse_retries: cfg.parse_retries,
            on_done: &|n| progress.inc(n),
        };
        let judged = match j.mode() {
            JudgeMode::Json => judge_json(&run, &responses),
            JudgeMode::Distribution => judge_distribution(&run, &responses),
        };
        let judged = judged.map_err(|e| format!("judge {:?}: template: {e}", j.name))?;
        if let Some(first) = judged.first().filter(|_| judged.iter().all(|r| r.status != "ok")) {
            let why = first.error.as_deref().unwrap_or("");
            return Err(format!(
                "judge {:?}: all {} judgments failed; the first: {why}",
                j.name,
                judged.len()
            )
            .into());
        }
        rows.extend(judged);
    }
    let secs = started.elapsed().as_secs_f64();
    write_judgments(&cx.output_table("judgments"), &rows)?;
    let agreement = agreements(&rows);
    let json = serde_json::to_vec_pretty(&agreement)?;
    std::fs::write(cx.output_dir("judgments").join("agreement.json"), json)?;
    let ok = rows.iter().filter(|r| r.status == "ok").count() as u64;
    cx.metric("responses", responses.len() as u64);
    cx.metric("judgments", rows.len() as u64);
    cx.metric("judgments_ok", ok);
    cx.metric("judgments_failed", rows.len() as u64 - ok);
    for j in &cfg.judges {
        let failed = rows.iter().filter(|r| r.judge == j.name && r.status != "ok").count() as u64;
        cx.metric(format!("failed.{}", j.name), failed);
    }
    for a in &agreement {
        let at = format!("agreement.{}.{}~{}", a.metric, a.judge_a, a.judge_b);
        cx.metric(format!("{at}.exact"), a.exact);
        cx.metric(format!("{at}.within_1"), a.within_1);
        cx.metric(
            format!("{at}.kappa"),
            a.kappa.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null),
        );
    }
    let (hits, sent) = (cache.hits(), cache.misses());
    cx.metric("cache_hits", hits);
    cx.metric("requests_sent", sent);
    cx.metric(
        "cache_hit_rate",
        if hits + sent == 0 { 0.0 } else { hits as f64 / (hits + sent) as f64 },
    );
    cx.metric("seconds", (secs * 100.0).round() / 100.0);
    cx.metric(
        "judgments_per_second",
        if secs > 0.0 { (rows.len() as f64 / secs * 100.0).round() / 100.0 } else { 0.0 },
    );
    Ok(())
}
