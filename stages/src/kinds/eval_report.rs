//! The `eval_report` artifact kind: eval's report, whose recorded metrics register keeps.

use medalign_engine::ArtifactKind;

/// The `eval_report` artifact kind: eval's results; its recorded metrics are what register keeps.
pub const EVAL_REPORT: ArtifactKind = ArtifactKind {
    name: "eval_report",
    doc: "eval results: metrics in the artifact record (and metrics.json), the HTML report",
    schema_json: None,
};
