//! Params of the `generate` stage kind: generators (a model at some setting, or the dataset's
//! reference or rejected answer), the prompts they answer, their slots and checks.

use medalign_model::SamplingParams;
use std::collections::BTreeSet;

use medalign_engine::{
    Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::generate::prompt::reference_system;
use crate::kinds::adapter::ADAPTER;
use crate::kinds::candidates::CANDIDATES;
use crate::kinds::examples::{Example, Message, Task, EXAMPLES};
use crate::llm::{BackendConfig, ChatRequest, ReplyFormat};
use crate::sample::spread_by;

/// Where a generator's answers come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// Ask the model (`llm`).
    #[default]
    Model,
    /// The dataset's reference answer (examples without one get no candidate).
    Reference,
    /// The dataset's rejected reply of a preference example.
    Rejected,
}

/// One named generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GeneratorConfig {
    /// Its name in `candidates` and `pairs`, e.g. `high`.
    pub name: String,
    /// `model` (default), `reference` or `rejected`.
    #[serde(default)]
    pub source: CandidateSource,
    /// This generator's LLM, when not the stage's `llm`.
    #[serde(default)]
    pub llm: Option<BackendConfig>,
    /// Sampling temperature (0 is greedy).
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Token budget, when not the stage's `max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Show the model the reference answer in a system turn (the "high" setting).
    #[serde(default)]
    pub with_reference: bool,
}

/// Params of the `generate` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateConfig {
    /// The generators; each adds one candidate per prompt.
    pub generators: Vec<GeneratorConfig>,
    /// The LLM of every `model` generator without its own `llm`.
    #[serde(default)]
    pub llm: BackendConfig,
    /// Only examples of these tasks get candidates.
    #[serde(default = "default_tasks")]
    pub tasks: Vec<String>,
    /// At most this many prompts: the first ones, in input order, after the task filter.
    #[serde(default)]
    pub limit: Option<usize>,
    /// At most this many prompts of each task, spread evenly over that task's rows in input order
    /// (every k-th), so a sample covers every source and category; applied before `limit`.
    #[serde(default)]
    pub per_task: Option<usize>,
    /// At most this many prompts of a source (ingest's source name, e.g. `{medquad: 64}`), evenly
    /// spread over its rows; applied before `per_task`, so a source left out keeps all its rows.
    #[serde(default)]
    pub source_limits: std::collections::BTreeMap<String, usize>,
    /// Leave out the examples the `adapter` input trained on (an SFT adapter's list of them),
    /// before the limits: the tuned model's mistakes then come from prompts it has not seen, as
    /// they will in use, rather than from ones it learned by heart.
    #[serde(default)]
    pub unseen: bool,
    /// Token budget of each answer.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// A system turn put before every prompt.
    #[serde(default)]
    pub system: Option<String>,
}

fn default_tasks() -> Vec<String> {
    ["instruction", "dialogue", "safety", "preference"].map(String::from).to_vec()
}
fn default_max_tokens() -> u32 {
    192
}

impl GenerateConfig {
    /// The examples that get candidates.
    pub fn select(&self, rows: Vec<Example>) -> Vec<Example> {
        let keep: BTreeSet<&str> = self.tasks.iter().map(String::as_str).collect();
        let rows: Vec<Example> =
            rows.into_iter().filter(|e| keep.contains(e.task.as_str())).collect();
        let rows = spread_by(
            rows,
            |e| e.source.as_str(),
            |source| self.source_limits.get(source).copied(),
        );
        let rows = match self.per_task {
            Some(n) => spread_by(rows, |e| e.task.as_str(), |_| Some(n)),
            None => rows,
        };
        rows.into_iter().take(self.limit.unwrap_or(usize::MAX)).collect()
    }

    /// The request generator `g` makes for an example with these prompt turns and reference.
    pub(super) fn request(
        &self,
        g: &GeneratorConfig,
        turns: &[Message],
        reference: Option<&str>,
        seed: u64,
    ) -> ChatRequest {
        let mut messages = Vec::new();
        match (g.with_reference, reference) {
            (true, Some(r)) => messages.push(reference_system(self.system.as_deref(), r)),
            _ => messages.extend(self.system.as_ref().map(|s| Message::new("system", s.clone()))),
        }
        messages.extend(turns.iter().cloned());
        let sampling = SamplingParams {
            temperature: g.temperature,
            top_p: g.top_p,
            seed,
            ..Default::default()
        };
        let max_tokens = g.max_tokens.unwrap_or(self.max_tokens);
        ChatRequest { messages, sampling, max_tokens, format: ReplyFormat::Text }
    }
}

impl StageConfig for GenerateConfig {
    const KIND: &'static str = "generate";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Asks each prompt of named generators (a local or OpenAI-compatible model at a temperature, \
        with or without the reference answer in context, or the dataset's own reference or rejected answer) and writes \
        every answer as a candidate. Answers are cached per request, so a rerun sends nothing already answered.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot { name: "examples", kinds: &[EXAMPLES.name], arity: Arity::AtLeastOne, doc: "the prompts, in order" },
            InputSlot {
                name: "adapter",
                kinds: &[ADAPTER.name],
                arity: Arity::Optional,
                doc: "a LoRA adapter every local model generator applies (e.g. SFT's, to sample the tuned model's own answers)",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot {
            name: "candidates",
            kind: CANDIDATES.name,
            doc: "one row per prompt and generator",
        }]
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = self.llm.check("llm");
        if self.generators.is_empty() {
            errors.push(ParamError::new("generators", "give at least one generator"));
        }
        let mut names = BTreeSet::new();
        for (i, g) in self.generators.iter().enumerate() {
            let at = |f: &str| format!("generators[{i}].{f}");
            if g.name.trim().is_empty() || g.name.contains('#') {
                errors.push(ParamError::new(at("name"), "give a non-empty name without '#'"));
            } else if !names.insert(g.name.as_str()) {
                errors.push(ParamError::new(
                    at("name"),
                    format!("{:?} names two generators", g.name),
                ));
            }
            if !(0.0..=2.0).contains(&g.temperature) {
                errors.push(ParamError::new(
                    at("temperature"),
                    format!("expected 0 to 2, got {}", g.temperature),
                ));
            }
            if let Some(llm) = &g.llm {
                errors.extend(llm.check(&format!("generators[{i}].llm")));
            }
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if Task::parse(t).is_none() {
                errors.push(ParamError::new(format!("tasks[{i}]"), format!("unknown task {t:?}")));
            }
        }
        errors
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
