//! The run of an `eval` stage: how it ties the suites together (load each model, run the suites,
//! compute metrics and deltas, write tables and the report).

use std::path::{Path, PathBuf};

use medalign_engine::{RunContext, StageError};
use medalign_model::layers::bf16_products;
use medalign_model::{LanguageModel, LoadOptions};

use super::config::{EvalConfig, Precision, RefusalLabels};
use crate::eval::curves::read_curve;
use crate::eval::data::EvalSet;
use crate::eval::judged::{judge_replies, relabel_refusals, score_rows};
use crate::eval::refusal::RULE_SET_NAME;
use crate::eval::runner;
use crate::eval::{medication, metrics, report};
use crate::kinds::adapter::adapter_dir;
use crate::kinds::eval_metrics::{write_eval_metrics, MetricRow};
use crate::kinds::examples::read_examples;
use crate::kinds::predictions::write_predictions;
use crate::llm::{Backends, ReplyCache};

/// Runs a stage with params `cfg`.
pub fn run(cfg: &EvalConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let mut rows = Vec::new();
    for input in cx.inputs("examples") {
        rows.extend(read_examples(&input.table())?);
    }
    let set = EvalSet::from_examples(rows, cfg.limit, cfg.safety_limit)?;
    let mut pool_rows = Vec::new();
    for input in cx.inputs("fewshot") {
        pool_rows.extend(read_examples(&input.table())?);
    }
    let pool = EvalSet::fewshot_pool(pool_rows)?;
    let consultations = match &cfg.medication_safety {
        Some(m) => medication::load(&cx.resolve(&m.path), &m.path, cfg.safety_limit)?,
        None => Vec::new(),
    };
    let adapter = cx.input("adapter").map(|a| adapter_dir(&a.dir));
    let mut models: Vec<(&str, String, Option<PathBuf>)> = vec![("base", cfg.base.clone(), None)];
    match (&cfg.candidate, &adapter) {
        (Some(c), a) => models.push(("candidate", c.clone(), a.clone())),
        (None, Some(a)) => models.push(("candidate", cfg.base.clone(), Some(a.clone()))),
        (None, None) => {}
    }
    let settings = cfg.settings();
    let mut preds = Vec::new();
    for (label, spec, adapter) in &models {
        cx.progress().set_message(format!("{label}: loading {spec}"));
        let source = medalign_registry::resolve(spec, cx.manifest_dir(), cx.store_dir())
            .map_err(|e| format!("{label} model {spec}: {e}"))?;
        if source.adapter.is_some() && adapter.is_some() {
            return Err(format!("{label} model {spec} is registered with its own adapter; give the eval stage no adapter input").into());
        }
        let load = |precision: Precision| -> Result<LanguageModel, String> {
            let opts = LoadOptions { format: precision.format(), ..LoadOptions::inference() };
            let mut lm = source.load(&opts).map_err(|e| format!("{label} model {spec}: {e}"))?;
            if let Some(dir) = adapter {
                lm.load_adapter(dir).map_err(|e| format!("adapter {}: {e}", dir.display()))?;
            }
            Ok(lm)
        };
        let lm = load(cfg.precision)?;
        let progress = cx.progress();
        let (bench, rate) = bf16_products(cfg.precision.bf16(), || {
            runner::benchmarks(&lm, label, &set, &pool, &settings, &mut |m| {
                progress.set_message(m.to_string())
            })
        })?;
        preds.extend(bench);
        if let Some(r) = rate {
            cx.metric(format!("questions_per_s.{label}"), (r * 100.0).round() / 100.0);
        }
        let replies =
            !consultations.is_empty() || !set.harmful.is_empty() || !set.benign.is_empty();
        let reply_lm = if replies && cfg.reply_precision.format() != cfg.precision.format() {
            load(cfg.reply_precision)?
        } else {
            lm
        };
        let started = std::time::Instant::now();
        if !consultations.is_empty() {
            cx.progress().set_message(format!(
                "{label}: medication safety, {} consultations",
                consultations.len()
            ));
            preds.extend(bf16_products(cfg.reply_precision.bf16(), || {
                runner::medication(&reply_lm, label, &consultations, &settings)
            })?);
        }
        if !set.harmful.is_empty() || !set.benign.is_empty() {
            cx.progress().set_message(format!(
                "{label}: refusal, {} harmful and {} benign",
                set.harmful.len(),
                set.benign.len()
            ));
            preds.extend(bf16_products(cfg.reply_precision.bf16(), || {
                runner::refusal(&reply_lm, label, &set, &settings)
            })?);
        }
        if replies {
            cx.metric(
                format!("reply_seconds.{label}"),
                (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            );
        }
    }
    let mut classifier = RULE_SET_NAME.to_string();
    let mut judge_rows = Vec::new();
    let mut refusal_labels = None;
    if let Some(spec) = &cfg.judge {
        cx.progress().set_message(format!("judge {}: scoring replies", spec.name));
        let mut backends = Backends::for_stage(cx.check_context(), None);
        let backend = backends.get(&spec.llm).map_err(|e| format!("judge {:?}: {e}", spec.name))?;
        let cache = ReplyCache::new(cx.cache_dir("llm")?);
        let (scores, failed) = judge_replies(spec, backend, &cache, &preds, &set, cx.seed())?;
        let who = format!("judge {} ({})", spec.name, backend.identity());
        judge_rows = score_rows(&scores, &who, cx.seed());
        if cfg.refusals != Some(RefusalLabels::Rules) {
            let kept = relabel_refusals(&mut preds, &scores);
            cx.metric("refusals_kept_rule_label", kept as u64);
            let label = if kept == 0 {
                who.clone()
            } else {
                format!("{who}; rule set on {kept} replies the judge failed on")
            };
            classifier = format!("{label} (refusals); {RULE_SET_NAME} (medication flags, answers)");
            refusal_labels = Some(label);
        } else {
            classifier = format!("{RULE_SET_NAME}; reply scores 1-5 by {who}");
        }
        cx.metric("judge_scores", scores.len() as u64);
        cx.metric("judge_failed", failed as u64);
        let file = cx.output_dir("report").join("judge_scores.jsonl");
        let lines: String = scores
            .iter()
            .map(|s| serde_json::json!({"model": s.model, "set": s.set, "id": s.id, "metric": s.metric, "score": s.score}).to_string() + "\n")
            .collect();
        std::fs::write(&file, lines).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    let mut rows = metrics::compute(&preds, RULE_SET_NAME, cx.seed());
    if let Some(label) = &refusal_labels {
        rows.iter_mut()
            .filter(|r| {
                matches!(r.suite.as_str(), "refusal" | "false_refusal") && r.classifier.is_some()
            })
            .for_each(|r| r.classifier = Some(label.clone()));
    }
    rows.extend(judge_rows);
    write_predictions(&cx.output_table("predictions"), &preds)?;
    write_eval_metrics(&cx.output_table("metrics"), &rows)?;
    let names: Vec<(String, String)> =
        models.iter().map(|(l, s, a)| (l.to_string(), describe(s, a.as_deref()))).collect();
    let mut training = Vec::new();
    for input in cx.inputs("training") {
        training.extend(read_curve(&input.stage, &input.dir)?);
    }
    report::write(
        cx.output_dir("report"),
        &rows,
        &names,
        &classifier,
        &training,
        &serde_json::to_value(cfg)?,
    )?;
    let mut headline = serde_json::Map::new();
    let is_headline = |r: &&MetricRow| {
        matches!(r.metric.as_str(), "acc" | "refusal_rate" | "false_refusal_rate" | "safe_choice")
            || (r.suite == crate::eval::judged::JUDGE_SUITE
                && matches!(r.metric.as_str(), "empathy" | "factual_accuracy"))
    };
    for r in rows.iter().filter(is_headline) {
        let how = match r.suite.as_str() {
            "generative" => "_generative",
            "judge" => "_judge",
            _ => "",
        };
        let name = format!("{}{how}.{}.{}", r.metric, r.model, r.task);
        let value = (r.value * 10_000.0).round() / 10_000.0;
        headline.insert(name.clone(), value.into());
        cx.metric(name, value);
    }
    let file = cx.output_dir("report").join("metrics.json");
    std::fs::write(&file, serde_json::to_string_pretty(&headline)? + "\n")
        .map_err(|e| format!("{}: {e}", file.display()))?;
    cx.metric("predictions", preds.len() as u64);
    Ok(())
}

fn describe(spec: &str, adapter: Option<&Path>) -> String {
    match adapter {
        Some(a) => format!("{spec} + adapter {}", a.display()),
        None => spec.to_string(),
    }
}
