//! The `pair` stage kind: DPO pairs from judged candidates, chosen by judge score or by rule and reference.

mod config;
mod rules;
mod select;
mod stage;

pub use config::PairConfig;
pub use rules::select_by_rules;
pub use select::{select, Selection, Thresholds, Verified};
