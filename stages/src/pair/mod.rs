//! The `pair` stage kind: DPO pairs from judged candidates, chosen by judge score or by rule and reference.

mod config;
mod pairs;
mod rules;
mod select;

pub use config::PairConfig;
pub use pairs::{pairs_schema, read_pairs, write_pairs, Pair};
pub use rules::select_by_rules;
pub use select::{select, Selection, Thresholds, Verified};

/// The `pairs` artifact kind.
pub const PAIRS: medalign_engine::ArtifactKind = medalign_engine::ArtifactKind {
    name: "pairs",
    doc: "DPO pairs: prompt turns, chosen, rejected, scores, judges, tier (gold/silver), kind, source candidate ids",
    schema_json: Some(include_str!("../../../schemas/pairs.json")),
};
