//! The `judge` stage kind: LLM-as-judge scores of responses on a rubric, through prompt templates
//! users edit, with local or OpenAI-compatible judges and agreement statistics between judges.

mod agreement;
mod config;
mod rubric;
mod run;
mod stage;
mod verdict;

pub use agreement::{agreements, cohen_kappa, Agreement};
pub(crate) use config::{default_parse_retries, default_system};
pub use config::{JudgeConfig, JudgeMode, JudgeSpec};
pub use rubric::{default_metrics, Better, MetricConfig, Template, JSON_TEMPLATE, SCORE_TEMPLATE};
pub use run::{judge_distribution, judge_json, JudgeRun};
pub use verdict::{feedback, parse_distribution, parse_json_verdict, MetricScore};
