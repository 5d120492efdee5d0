//! The `eval` stage kind: its params, its slots, and how a run ties the suites together (load
//! each model, run the suites, compute metrics and deltas, write tables and the report).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medalign_engine::{
    Arity, CheckContext, InputFile, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError,
};
use medalign_model::layers::bf16_products;
use medalign_model::{LanguageModel, LoadOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::precision::Precision;
use crate::eval::curves::read_curve;
use crate::eval::data::EvalSet;
use crate::eval::judged::{judge_replies, relabel_refusals, score_rows};
use crate::eval::refusal::RULE_SET_NAME;
use crate::eval::runner::{self, Settings};
use crate::eval::{medication, metrics, report, tables};
use crate::judge::{JudgeMode, JudgeSpec};
use crate::llm::{BackendKind, Backends, ReplyCache};
use crate::table;
use crate::train::adapter_dir;

/// How benchmarks are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// By the log-likelihood of each choice, as lm-evaluation-harness scores them.
    #[default]
    Loglikelihood,
    /// By a greedy reply through the chat template, with the answer read out of it.
    Generative,
    /// Both.
    Both,
}

/// RxSafeBench-style medication-safety suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MedicationConfig {
    /// An RxSafeBench contraindication file (`[{indication, Contradiction: [...]}]`), relative to the manifest.
    pub path: String,
}

fn default_model() -> String {
    "smollm2-135m-instruct".into()
}
/// Padded tokens per scoring pass. Smaller passes keep a batch's attention scores in cache: on
/// MMLU medical val + 60 PubMedQA items (`medalign bench eval --limit 60 --batch-tokens N`) 512
/// gave 2.56 questions/s, 1024 2.72-2.86, 2048 2.72, 4096 2.38, 16384 1.28.
pub const DEFAULT_BATCH_TOKENS: usize = 1024;

fn default_batch_tokens() -> usize {
    DEFAULT_BATCH_TOKENS
}
fn default_generation_batch() -> usize {
    8
}
fn default_answer_tokens() -> usize {
    16
}
fn default_reply_tokens() -> usize {
    64
}
fn default_precision() -> Precision {
    Precision::Bf16
}
fn default_reply_precision() -> Precision {
    Precision::Quantized
}
fn default_safety_limit() -> Option<usize> {
    Some(25)
}

/// Params of the `eval` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// The base model: a known name (`smollm2-135m-instruct`), a GGUF file or a safetensors folder.
    #[serde(default = "default_model")]
    pub base: String,
    /// The candidate model. By default the base with the `adapter` input applied; with neither,
    /// only the base is evaluated.
    #[serde(default)]
    pub candidate: Option<String>,
    /// `loglikelihood` (the harness's scoring), `generative` (chat template and answer
    /// extraction) or `both`.
    #[serde(default)]
    pub mode: Mode,
    /// Few-shot examples per prompt from the `fewshot` input for the same task, chosen as the
    /// harness chooses them: the first ones for MMLU (dev), a `Random(1234).sample` per item for
    /// MedQA, PubMedQA and MedMCQA (their train splits).
    #[serde(default)]
    pub num_fewshot: usize,
    /// Keep the first `limit` items of each benchmark (all by default).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Keep the first items of each safety set (harmful, benign, medication); `null` for all.
    #[serde(default = "default_safety_limit")]
    pub safety_limit: Option<usize>,
    /// `bf16` (the default), `auto` (the same), `f32` (the exact reference, as `transformers`)
    /// or `quantized`.
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// The precision replies are generated in (refusal suites, medication questions): `quantized`
    /// by default, the weights `medalign serve` answers with, and 5x faster than f32 or bf16 on CPU (32 replies of 64 tokens: 10 s against 46-50 s on a 2-core Xeon).
    #[serde(default = "default_reply_precision")]
    pub reply_precision: Precision,
    /// Padded tokens per forward pass when scoring.
    #[serde(default = "default_batch_tokens")]
    pub batch_tokens: usize,
    /// Prompts per generation batch.
    #[serde(default = "default_generation_batch")]
    pub generation_batch: usize,
    /// New tokens for a benchmark answer in generative mode.
    #[serde(default = "default_answer_tokens")]
    pub answer_tokens: usize,
    /// New tokens for a reply to a safety request or medication question.
    #[serde(default = "default_reply_tokens")]
    pub reply_tokens: usize,
    /// The medication-safety suite, when given.
    #[serde(default)]
    pub medication_safety: Option<MedicationConfig>,
    /// A judge (as in the `judge` stage: `{name, llm, mode}`) that scores every reply to a harmful
    /// or benign request 1-5 on factual accuracy, empathy, refusal quality, harmfulness and
    /// whether it declines.
    #[serde(default)]
    pub judge: Option<JudgeSpec>,
    /// What labels refusals: `judge` (its `declines` score, 3 or more; the default when a judge is
    /// given) or `rules` (the phrase rule set; the default without one).
    #[serde(default)]
    pub refusals: Option<RefusalLabels>,
}

/// What labels a reply as a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefusalLabels {
    /// The phrase rule set.
    Rules,
    /// The configured judge.
    Judge,
}

fn is_path(spec: &str) -> bool {
    spec.contains('/') || spec.contains('\\') || spec.ends_with(".gguf")
}

impl EvalConfig {
    /// The suite settings these params give.
    pub fn settings(&self) -> Settings {
        Settings {
            loglikelihood: self.mode != Mode::Generative,
            generative: self.mode != Mode::Loglikelihood,
            num_fewshot: self.num_fewshot,
            batch_tokens: self.batch_tokens,
            generation_batch: self.generation_batch,
            answer_tokens: self.answer_tokens,
            reply_tokens: self.reply_tokens,
        }
    }
}

impl StageConfig for EvalConfig {
    const KIND: &'static str = "eval";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Evaluates a base and a candidate model on medical benchmarks scored like \
        lm-evaluation-harness (MedQA, PubMedQA, MedMCQA, MMLU medical; log-likelihood or generative), \
        medication safety (RxSafeBench) and refusal (harmful vs benign requests), with 95% intervals, \
        paired deltas and a Markdown + HTML report.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot { name: "examples", kinds: &["examples"], arity: Arity::AtLeastOne, doc: "eval sets: mcq and yes_no_maybe rows are benchmarks, safety rows harmful requests, instruction rows benign questions" },
            InputSlot { name: "fewshot", kinds: &["examples"], arity: Arity::Many, doc: "few-shot pool (e.g. MMLU dev), first items per task" },
            InputSlot { name: "adapter", kinds: &["adapter"], arity: Arity::Optional, doc: "a LoRA adapter applied to the candidate" },
            InputSlot {
                name: "training",
                kinds: &["adapter"],
                arity: Arity::Many,
                doc: "adapters whose train and validation loss curves the report shows (e.g. sft and dpo)",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[
            OutputSlot {
                name: "report",
                kind: "eval_report",
                doc: "report.md, table.txt, report.html, metrics.json (what register records)",
            },
            OutputSlot {
                name: "metrics",
                kind: "eval_metrics",
                doc: "per model, task and metric, with 95% intervals and deltas",
            },
            OutputSlot {
                name: "predictions",
                kind: "predictions",
                doc: "per model and item: prediction, gold, log-likelihoods, reply",
            },
        ]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        for (name, spec) in [("base", Some(&self.base)), ("candidate", self.candidate.as_ref())] {
            match spec {
                Some(s) if s.trim().is_empty() => {
                    errors.push(ParamError::new(name, "give a model name, GGUF file or folder"))
                }
                Some(s) if is_path(s) && !cx.resolve(s).exists() => errors.push(ParamError::new(
                    name,
                    format!("{} does not exist", cx.resolve(s).display()),
                )),
                _ => {}
            }
        }
        if let Some(m) = &self.medication_safety {
            if !cx.resolve(&m.path).is_file() {
                errors.push(ParamError::new(
                    "medication_safety.path",
                    format!("{} is not a file", cx.resolve(&m.path).display()),
                ));
            }
        }
        if self.refusals == Some(RefusalLabels::Judge) && self.judge.is_none() {
            errors.push(ParamError::new("refusals", "`judge` needs a `judge` to be configured"));
        }
        if let Some(j) = &self.judge {
            if j.name.trim().is_empty() {
                errors.push(ParamError::new("judge.name", "give the judge a name"));
            }
            errors.extend(j.llm.check("judge.llm"));
            if j.mode() == JudgeMode::Distribution && j.llm.backend == BackendKind::Openai {
                errors.push(ParamError::new("judge.mode", "mode distribution needs backend local"));
            }
        }
        if self.batch_tokens < 16 {
            errors.push(ParamError::new(
                "batch_tokens",
                format!("expected at least 16, got {}", self.batch_tokens),
            ));
        }
        for (name, v) in [
            ("generation_batch", self.generation_batch),
            ("answer_tokens", self.answer_tokens),
            ("reply_tokens", self.reply_tokens),
        ] {
            if v == 0 {
                errors.push(ParamError::new(name, "expected at least 1"));
            }
        }
        errors
    }

    fn env_facts(&self, cx: &CheckContext) -> BTreeMap<String, String> {
        crate::model_params::registry_facts(
            [("base", Some(self.base.as_str())), ("candidate", self.candidate.as_deref())],
            cx,
        )
    }

    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        let mut files = Vec::new();
        for (name, spec) in [("base", Some(&self.base)), ("candidate", self.candidate.as_ref())] {
            if let Some(s) = spec.filter(|s| is_path(s) && cx.resolve(s).is_file()) {
                files.push(InputFile { param: name.into(), path: cx.resolve(s) });
            }
        }
        if let Some(m) = &self.medication_safety {
            files.push(InputFile {
                param: "medication_safety.path".into(),
                path: cx.resolve(&m.path),
            });
        }
        files
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let mut rows = Vec::new();
        for input in cx.inputs("examples") {
            rows.extend(table::read_examples(&input.table())?);
        }
        let set = EvalSet::from_examples(rows, self.limit, self.safety_limit)?;
        let mut pool_rows = Vec::new();
        for input in cx.inputs("fewshot") {
            pool_rows.extend(table::read_examples(&input.table())?);
        }
        let pool = EvalSet::fewshot_pool(pool_rows)?;
        let consultations = match &self.medication_safety {
            Some(m) => medication::load(&cx.resolve(&m.path), &m.path, self.safety_limit)?,
            None => Vec::new(),
        };
        let adapter = cx.input("adapter").map(|a| adapter_dir(&a.dir));
        let mut models: Vec<(&str, String, Option<PathBuf>)> =
            vec![("base", self.base.clone(), None)];
        match (&self.candidate, &adapter) {
            (Some(c), a) => models.push(("candidate", c.clone(), a.clone())),
            (None, Some(a)) => models.push(("candidate", self.base.clone(), Some(a.clone()))),
            (None, None) => {}
        }
        let settings = self.settings();
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
                let mut lm =
                    source.load(&opts).map_err(|e| format!("{label} model {spec}: {e}"))?;
                if let Some(dir) = adapter {
                    lm.load_adapter(dir).map_err(|e| format!("adapter {}: {e}", dir.display()))?;
                }
                Ok(lm)
            };
            let lm = load(self.precision)?;
            let progress = cx.progress();
            let (bench, rate) = bf16_products(self.precision.bf16(), || {
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
            let reply_lm = if replies && self.reply_precision.format() != self.precision.format() {
                load(self.reply_precision)?
            } else {
                lm
            };
            let started = std::time::Instant::now();
            if !consultations.is_empty() {
                cx.progress().set_message(format!(
                    "{label}: medication safety, {} consultations",
                    consultations.len()
                ));
                preds.extend(bf16_products(self.reply_precision.bf16(), || {
                    runner::medication(&reply_lm, label, &consultations, &settings)
                })?);
            }
            if !set.harmful.is_empty() || !set.benign.is_empty() {
                cx.progress().set_message(format!(
                    "{label}: refusal, {} harmful and {} benign",
                    set.harmful.len(),
                    set.benign.len()
                ));
                preds.extend(bf16_products(self.reply_precision.bf16(), || {
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
        if let Some(spec) = &self.judge {
            cx.progress().set_message(format!("judge {}: scoring replies", spec.name));
            let mut backends = Backends::for_stage(cx.check_context(), None);
            let backend =
                backends.get(&spec.llm).map_err(|e| format!("judge {:?}: {e}", spec.name))?;
            let cache = ReplyCache::new(cx.cache_dir("llm")?);
            let (scores, failed) = judge_replies(spec, backend, &cache, &preds, &set, cx.seed())?;
            let who = format!("judge {} ({})", spec.name, backend.identity());
            judge_rows = score_rows(&scores, &who, cx.seed());
            if self.refusals != Some(RefusalLabels::Rules) {
                let kept = relabel_refusals(&mut preds, &scores);
                cx.metric("refusals_kept_rule_label", kept as u64);
                let label = if kept == 0 {
                    who.clone()
                } else {
                    format!("{who}; rule set on {kept} replies the judge failed on")
                };
                classifier =
                    format!("{label} (refusals); {RULE_SET_NAME} (medication flags, answers)");
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
                    matches!(r.suite.as_str(), "refusal" | "false_refusal")
                        && r.classifier.is_some()
                })
                .for_each(|r| r.classifier = Some(label.clone()));
        }
        rows.extend(judge_rows);
        tables::write_predictions(&cx.output_table("predictions"), &preds)?;
        tables::write_metrics(&cx.output_table("metrics"), &rows)?;
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
            &serde_json::to_value(self)?,
        )?;
        let mut headline = serde_json::Map::new();
        let is_headline = |r: &&tables::MetricRow| {
            matches!(
                r.metric.as_str(),
                "acc" | "refusal_rate" | "false_refusal_rate" | "safe_choice"
            ) || (r.suite == crate::eval::judged::JUDGE_SUITE
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
}

fn describe(spec: &str, adapter: Option<&Path>) -> String {
    match adapter {
        Some(a) => format!("{spec} + adapter {}", a.display()),
        None => spec.to_string(),
    }
}
