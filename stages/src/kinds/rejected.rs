//! The `rejected` artifact kind: the records ingest could not read under `on_error: quarantine`,
//! with `file:line` and the reason.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use crate::table::{self, opt_text, text, Layout, TableError};

/// The `rejected` artifact kind: records ingest could not read, with the reason.
pub const REJECTED: ArtifactKind = ArtifactKind {
    name: "rejected",
    doc: "records set aside by ingest under on_error: quarantine, with file:line and the reason",
    schema_json: Some(include_str!("../../../schemas/rejected.json")),
};

/// A record ingest rejected under `on_error: quarantine`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The source name.
    pub source: String,
    /// `path:line`.
    pub origin: String,
    /// What is wrong, as the error message would say it after `path:line: `.
    pub reason: String,
    /// The record's original text (decoded lossily, U+FFFD for each bad sequence, when not UTF-8).
    pub record: String,
    /// When the record is not UTF-8: its raw bytes, in base64.
    pub record_base64: Option<String>,
}

/// The Arrow schema of the `rejected` kind (`schemas/rejected.json`): a record ingest could not read,
/// and its raw bytes in base64 when they are not UTF-8.
pub fn rejected_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    let base64 = Field::new("record_base64", DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        text("source"),
        text("origin"),
        text("reason"),
        text("record"),
        base64,
    ]))
}

/// Writes a `rejected` table.
pub fn write_rejected(path: &Path, rows: &[Rejection]) -> Result<(), TableError> {
    table::write_table(path, rejected_schema(), Layout::Grouped, rows, |chunk| {
        vec![
            text(chunk.iter().map(|r| r.source.as_str())),
            text(chunk.iter().map(|r| r.origin.as_str())),
            text(chunk.iter().map(|r| r.reason.as_str())),
            text(chunk.iter().map(|r| r.record.as_str())),
            opt_text(chunk.iter().map(|r| r.record_base64.as_deref())),
        ]
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_matches_the_schema_file() {
        crate::table::check_schema_file("rejected", &super::rejected_schema());
    }
}
