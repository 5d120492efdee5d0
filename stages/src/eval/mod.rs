//! The `eval` stage kind: medical benchmarks scored like lm-evaluation-harness, medication safety,
//! refusal, statistics and the comparison report.

pub mod config;
pub mod curves;
pub mod data;
pub mod generative;
pub mod html;
pub mod judged;
pub mod loglik;
pub mod medication;
pub mod metrics;
pub mod py_random;
pub mod refusal;
pub mod report;
pub mod runner;
mod stage;
pub mod stats;
pub mod template;

pub use config::{EvalConfig, Mode, Precision, RefusalLabels};
pub use report::report_table;
