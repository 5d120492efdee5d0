//! Params of the `judge` stage kind: the judges, the rubric's metrics and templates, their slots
//! and checks.

use std::collections::{BTreeMap, BTreeSet};

use medalign_engine::{
    Arity, CheckContext, InputFile, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::judge::rubric::{
    default_metrics, MetricConfig, Template, JSON_TEMPLATE, SCORE_TEMPLATE,
};
use crate::kinds::candidates::CANDIDATES;
use crate::kinds::examples::EXAMPLES;
use crate::kinds::judgments::JUDGMENTS;
use crate::llm::{BackendConfig, BackendKind};

/// How a judge answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// A JSON object with a score and a rationale per metric (any backend; the default for endpoints).
    Json,
    /// The probability of each score 1-5, read from one forward pass per metric (local only; the
    /// default for local models, too small to write reliable JSON).
    Distribution,
}

/// One judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JudgeSpec {
    /// Its name in `judgments` and `pairs`.
    pub name: String,
    /// Its LLM (by default the local model).
    #[serde(default)]
    pub llm: BackendConfig,
    /// `json` or `distribution`; by default `distribution` for local models and `json` for endpoints.
    #[serde(default)]
    pub mode: Option<JudgeMode>,
    /// Sampling temperature of json-mode requests.
    #[serde(default)]
    pub temperature: f64,
    /// Token budget of a json-mode answer.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

impl JudgeSpec {
    /// The mode, defaults applied.
    pub fn mode(&self) -> JudgeMode {
        self.mode.unwrap_or(match self.llm.backend {
            BackendKind::Local => JudgeMode::Distribution,
            BackendKind::Openai => JudgeMode::Json,
        })
    }
}

fn default_max_tokens() -> u32 {
    400
}
fn default_judges() -> Vec<JudgeSpec> {
    vec![JudgeSpec {
        name: "local".into(),
        llm: BackendConfig::default(),
        mode: None,
        temperature: 0.0,
        max_tokens: default_max_tokens(),
    }]
}
pub(crate) fn default_system() -> String {
    "You are a careful, strict medical expert who grades answers. You reply with JSON only.".into()
}
pub(crate) fn default_parse_retries() -> u32 {
    2
}

/// Params of the `judge` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JudgeConfig {
    /// The judges (default: one local judge named `local`).
    #[serde(default = "default_judges")]
    pub judges: Vec<JudgeSpec>,
    /// The rubric (default: factual_accuracy, empathy, refusal_quality, harmfulness).
    #[serde(default = "default_metrics")]
    pub metrics: Vec<MetricConfig>,
    /// Minijinja template of json-mode prompts, relative to the manifest (default: the built-in
    /// copy of `pipelines/prompts/judge.jinja`).
    #[serde(default)]
    pub template: Option<String>,
    /// Minijinja template of distribution-mode prompts (default: built-in `judge_score.jinja`).
    #[serde(default)]
    pub score_template: Option<String>,
    /// The system turn of json-mode requests.
    #[serde(default = "default_system")]
    pub system: String,
    /// Times an unparseable answer is fed back before the judgment is recorded as failed.
    #[serde(default = "default_parse_retries")]
    pub parse_retries: u32,
    /// At most this many responses (the first ones, in input order).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl JudgeConfig {
    pub(super) fn load_template(
        &self,
        cx: &CheckContext,
        path: &Option<String>,
        built_in: &str,
    ) -> Result<Template, String> {
        match path {
            Some(p) => {
                let file = cx.resolve(p);
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
                Template::new(&text, &file.display().to_string())
            }
            None => Template::new(built_in, "built-in template"),
        }
    }
}

impl StageConfig for JudgeConfig {
    const KIND: &'static str = "judge";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Scores responses (candidates, or examples' own reference answers) 1-5 on a rubric of metrics \
        through minijinja prompt templates, with local or OpenAI-compatible judges; JSON answers are validated and \
        retried with the error fed back, failures kept with their raw text. Several judges add agreement statistics.";

    fn inputs() -> &'static [InputSlot] {
        &[InputSlot {
            name: "responses",
            kinds: &[CANDIDATES.name, EXAMPLES.name],
            arity: Arity::AtLeastOne,
            doc: "what to judge",
        }]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot {
            name: "judgments",
            kind: JUDGMENTS.name,
            doc: "one row per response, judge and metric",
        }]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        let mut names = BTreeSet::new();
        if self.judges.is_empty() {
            errors.push(ParamError::new("judges", "give at least one judge"));
        }
        for (i, j) in self.judges.iter().enumerate() {
            if j.name.trim().is_empty() || !names.insert(j.name.as_str()) {
                errors.push(ParamError::new(
                    format!("judges[{i}].name"),
                    format!("{:?}: give each judge its own non-empty name", j.name),
                ));
            }
            errors.extend(j.llm.check(&format!("judges[{i}].llm")));
            if j.mode() == JudgeMode::Distribution && j.llm.backend == BackendKind::Openai {
                errors.push(ParamError::new(
                    format!("judges[{i}].mode"),
                    "mode distribution needs backend local",
                ));
            }
        }
        let mut metric_names = BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let valid =
                !m.name.is_empty() && m.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || !metric_names.insert(m.name.as_str()) {
                errors.push(ParamError::new(
                    format!("metrics[{i}].name"),
                    format!("{:?}: expected a unique name of letters, digits and _", m.name),
                ));
            }
        }
        for (param, path, built_in) in [
            ("template", &self.template, JSON_TEMPLATE),
            ("score_template", &self.score_template, SCORE_TEMPLATE),
        ] {
            if let Err(e) = self.load_template(cx, path, built_in) {
                errors.push(ParamError::new(param, e));
            }
        }
        errors
    }

    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        [("template", &self.template), ("score_template", &self.score_template)]
            .into_iter()
            .filter_map(|(param, p)| {
                p.as_ref().map(|p| InputFile { param: param.into(), path: cx.resolve(p) })
            })
            .collect()
    }

    fn env_facts(&self, _cx: &CheckContext) -> BTreeMap<String, String> {
        // The built-in templates are user-editable text, not code: their hashes key the output.
        let mut facts = BTreeMap::new();
        for (name, path, text) in [
            ("template", &self.template, JSON_TEMPLATE),
            ("score_template", &self.score_template, SCORE_TEMPLATE),
        ] {
            if path.is_none() {
                facts.insert(
                    format!("judge.built_in_{name}"),
                    blake3::hash(text.as_bytes()).to_hex()[..16].to_string(),
                );
            }
        }
        facts
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
