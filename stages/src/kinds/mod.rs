//! One home per artifact kind: each module holds the kind's [`ArtifactKind`] constant (stage slots
//! name kinds through it) and, for a table kind, its Arrow schema (the file under `schemas/`), its
//! row type and how to read and write it; for a directory kind, the names of its files. Stages read
//! one another's outputs only through here.

pub mod adapter;
pub mod candidates;
pub mod eval_metrics;
pub mod eval_report;
pub mod examples;
pub mod exported_model;
pub mod judgments;
pub mod pairs;
pub mod predictions;
pub mod quantized_model;
pub mod reference_logprobs;
pub mod registered_model;
pub mod rejected;
pub mod removed;

use medalign_engine::ArtifactKind;

/// Every artifact kind of this crate.
pub const ALL: [ArtifactKind; 14] = [
    examples::EXAMPLES,
    rejected::REJECTED,
    removed::REMOVED,
    candidates::CANDIDATES,
    judgments::JUDGMENTS,
    pairs::PAIRS,
    predictions::PREDICTIONS,
    eval_metrics::EVAL_METRICS,
    eval_report::EVAL_REPORT,
    adapter::ADAPTER,
    reference_logprobs::REFERENCE_LOGPROBS,
    quantized_model::QUANTIZED_MODEL,
    exported_model::EXPORTED_MODEL,
    registered_model::REGISTERED_MODEL,
];
