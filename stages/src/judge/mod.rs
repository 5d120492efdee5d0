//! The `judge` stage kind: LLM-as-judge scores of responses on a rubric, through prompt templates
//! users edit, with local or OpenAI-compatible judges and agreement statistics between judges.

mod agreement;
mod config;
mod judgments;
mod rubric;
mod run;
mod verdict;

pub use agreement::{agreements, cohen_kappa, Agreement};
pub(crate) use config::{default_parse_retries, default_system};
pub use config::{read_responses, JudgeConfig, JudgeMode, JudgeSpec};
pub use judgments::{judgments_schema, read_judgments, write_judgments, Judgment};
pub use rubric::{default_metrics, Better, MetricConfig, Template, JSON_TEMPLATE, SCORE_TEMPLATE};
pub use run::{judge_distribution, judge_json, JudgeRun};
pub use verdict::{feedback, parse_distribution, parse_json_verdict, MetricScore};

/// The `judgments` artifact kind.
pub const JUDGMENTS: medalign_engine::ArtifactKind = medalign_engine::ArtifactKind {
    name: "judgments",
    doc: "judge scores: response, judge, metric, score 1-5, rationale, status, raw answer of failures; agreement.json",
    schema_json: Some(include_str!("../../../schemas/judgments.json")),
};
