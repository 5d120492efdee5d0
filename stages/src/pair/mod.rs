//! The `pair` stage kind: gold and silver DPO pairs from judged candidates.

mod config;
mod pairs;
mod select;

pub use config::PairConfig;
pub use pairs::{pairs_schema, read_pairs, write_pairs, Pair};
pub use select::{select, Selection, Thresholds, Verified};

/// The `pairs` artifact kind.
pub const PAIRS: medalign_engine::ArtifactKind = medalign_engine::ArtifactKind {
    name: "pairs",
    doc: "DPO pairs: prompt turns, chosen, rejected, scores, judges, tier (gold/silver), kind, source candidate ids",
    schema_json: Some(include_str!("../../../schemas/pairs.json")),
};
