//! The `eval` stage kind's params ([`EvalConfig`]): models, modes, suites, the judge, the slots and
//! checks.

pub use crate::precision::Precision;

use std::collections::BTreeMap;

use medalign_engine::{
    Arity, CheckContext, InputFile, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::eval::runner::Settings;
use crate::judge::{JudgeMode, JudgeSpec};
use crate::kinds::adapter::ADAPTER;
use crate::kinds::eval_metrics::EVAL_METRICS;
use crate::kinds::eval_report::EVAL_REPORT;
use crate::kinds::examples::EXAMPLES;
use crate::kinds::predictions::PREDICTIONS;
use crate::llm::BackendKind;

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
            InputSlot { name: "examples", kinds: &[EXAMPLES.name], arity: Arity::AtLeastOne, doc: "eval sets: mcq and yes_no_maybe rows are benchmarks, safety rows harmful requests, instruction rows benign questions" },
            InputSlot { name: "fewshot", kinds: &[EXAMPLES.name], arity: Arity::Many, doc: "few-shot pool (e.g. MMLU dev), first items per task" },
            InputSlot { name: "adapter", kinds: &[ADAPTER.name], arity: Arity::Optional, doc: "a LoRA adapter applied to the candidate" },
            InputSlot {
                name: "training",
                kinds: &[ADAPTER.name],
                arity: Arity::Many,
                doc: "adapters whose train and validation loss curves the report shows (e.g. sft and dpo)",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[
            OutputSlot {
                name: "report",
                kind: EVAL_REPORT.name,
                doc: "report.md, table.txt, report.html, metrics.json (what register records)",
            },
            OutputSlot {
                name: "metrics",
                kind: EVAL_METRICS.name,
                doc: "per model, task and metric, with 95% intervals and deltas",
            },
            OutputSlot {
                name: "predictions",
                kind: PREDICTIONS.name,
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
        super::stage::run(self, cx)
    }
}
