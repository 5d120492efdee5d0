//! The stage kinds of the MedAlign pipeline, each in its own module, plugged into the engine with
//! [`register`].
#![warn(missing_docs)]

pub mod columns;
pub mod dedupe;
pub mod eval;
pub mod example;
pub mod export;
pub mod files;
pub mod generate;
pub mod ingest;
pub mod judge;
pub mod llm;
mod model_params;
pub mod pair;
pub mod precision;
pub mod quantize;
pub mod register;
pub mod table;
pub mod train;

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

/// The `predictions` artifact kind: eval's per-model, per-item outcomes.
pub const PREDICTIONS: ArtifactKind = ArtifactKind {
    name: "predictions",
    doc: "eval predictions: model, suite, task, item, gold, prediction, choice log-likelihoods, reply",
    schema_json: Some(include_str!("../../schemas/predictions.json")),
};

/// The `eval_metrics` artifact kind: eval's metrics with 95% intervals and base-vs-candidate deltas.
pub const EVAL_METRICS: ArtifactKind = ArtifactKind {
    name: "eval_metrics",
    doc: "eval metrics per model, suite, task and metric: value, n, 95% interval, delta rows with p-value",
    schema_json: Some(include_str!("../../schemas/eval_metrics.json")),
};

/// Registers every stage kind and artifact kind of this crate.
pub fn register(registry: &mut KindRegistry) {
    registry.artifact(EXAMPLES).artifact(REJECTED).artifact(REMOVED);
    registry.register::<ingest::IngestConfig>();
    registry.register::<dedupe::DedupeConfig>();
    registry.artifact(generate::CANDIDATES).artifact(judge::JUDGMENTS).artifact(pair::PAIRS);
    registry
        .register::<generate::GenerateConfig>()
        .register::<judge::JudgeConfig>()
        .register::<pair::PairConfig>();
    registry.artifact(PREDICTIONS).artifact(EVAL_METRICS);
    registry.register::<eval::EvalConfig>();
    registry
        .artifact(register::ADAPTER)
        .artifact(register::EVAL_REPORT)
        .artifact(register::REGISTERED_MODEL);
    registry.register::<register::RegisterConfig>();
    registry.artifact(train::REFERENCE_LOGPROBS).artifact(quantize::QUANTIZED_MODEL);
    registry.register::<quantize::QuantizeConfig>();
    registry.artifact(export::EXPORTED_MODEL).register::<export::ExportConfig>();
    registry.register::<train::TrainConfig>().register::<train::ReferenceLogprobsConfig>();
}
