//! The `removed` artifact kind: the examples dedupe dropped, each with the reason, the surviving
//! copy or eval item it matched, and the score that decided it.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use super::examples::{example_columns, example_fields, Example};
use crate::table::{self, opt_f64, opt_text, text, Layout, TableError};

/// The `removed` artifact kind: examples dedupe dropped, with the reason and the id they collided with.
pub const REMOVED: ArtifactKind = ArtifactKind {
    name: "removed",
    doc: "examples removed by dedupe: the row, the reason, the surviving copy or eval item it matched, the score",
    schema_json: Some(include_str!("../../../schemas/removed.json")),
};

/// A row dedupe removed.
#[derive(Clone, Debug, PartialEq)]
pub struct Removal {
    /// The removed example.
    pub example: Example,
    /// `exact_duplicate`, `near_duplicate`, `contaminated`, or a quality filter's name.
    pub reason: String,
    /// The surviving copy's id, or the eval item's id.
    pub matched_id: Option<String>,
    /// Jaccard similarity of the word shingles, or the share of the row's n-grams found in the eval item.
    pub score: Option<f64>,
}

/// The Arrow schema of the `removed` kind (`schemas/removed.json`): an example, why it was removed,
/// the id it collided with (surviving copy or eval item) and the similarity that decided it.
pub fn removed_schema() -> SchemaRef {
    let mut fields = example_fields();
    fields.push(Field::new("reason", DataType::Utf8, false));
    fields.push(Field::new("matched_id", DataType::Utf8, true));
    fields.push(Field::new("score", DataType::Float64, true));
    Arc::new(Schema::new(fields))
}

/// Writes a `removed` table; [`super::examples::read_examples`] reads its example columns back.
pub fn write_removed(path: &Path, rows: &[Removal]) -> Result<(), TableError> {
    table::write_table(path, removed_schema(), Layout::Grouped, rows, |chunk| {
        let mut cols = example_columns(&chunk.iter().map(|r| &r.example).collect::<Vec<_>>());
        cols.push(text(chunk.iter().map(|r| r.reason.as_str())));
        cols.push(opt_text(chunk.iter().map(|r| r.matched_id.as_deref())));
        cols.push(opt_f64(chunk.iter().map(|r| r.score)));
        cols
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_matches_the_schema_file() {
        crate::table::check_schema_file("removed", &super::removed_schema());
    }
}
