//! The stage kinds of the MedAlign pipeline, each in its own module, plugged into the engine with
//! [`register`].
#![warn(missing_docs)]

pub mod dedupe;
pub mod example;
pub mod ingest;
pub mod table;

use medalign_engine::{ArtifactKind, KindRegistry};

/// The `examples` artifact kind: normalized chat examples, one row each.
pub const EXAMPLES: ArtifactKind = ArtifactKind {
    name: "examples",
    doc: "normalized examples: id, source, task, chat messages, context, choices, answer, provenance, hash",
    schema_json: Some(include_str!("../../schemas/examples.json")),
};

/// The `rejected` artifact kind: records ingest could not read, with the reason.
pub const REJECTED: ArtifactKind = ArtifactKind {
    name: "rejected",
    doc: "records set aside by ingest under on_error: quarantine, with file:line and the reason",
    schema_json: Some(include_str!("../../schemas/rejected.json")),
};

/// The `removed` artifact kind: examples dedupe dropped, with the reason and the id they collided with.
pub const REMOVED: ArtifactKind = ArtifactKind {
    name: "removed",
    doc: "examples removed by dedupe: the row, the reason, the surviving copy or eval item it matched, the score",
    schema_json: Some(include_str!("../../schemas/removed.json")),
};

/// Registers every stage kind and artifact kind of this crate.
pub fn register(registry: &mut KindRegistry) {
    registry.artifact(EXAMPLES).artifact(REJECTED).artifact(REMOVED);
    registry.register::<ingest::IngestConfig>();
    registry.register::<dedupe::DedupeConfig>();
}
