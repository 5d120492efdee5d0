//! The `reference_logprobs` artifact kind, a table: per preference pair, the frozen reference
//! model's summed log-probability of the chosen and rejected reply, and their token counts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use crate::table::{self, field, Layout, TableError};

/// The `reference_logprobs` artifact kind.
pub const REFERENCE_LOGPROBS: ArtifactKind = ArtifactKind {
    name: "reference_logprobs",
    doc: "per preference pair: the reference model's summed log-probability of the chosen and rejected reply, and their token counts",
    schema_json: Some(include_str!("../../../schemas/reference_logprobs.json")),
};

/// The Arrow schema of `reference_logprobs` (`schemas/reference_logprobs.json`).
pub fn reference_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("pair_id", DataType::Utf8, false),
        field("chosen_logp", DataType::Float64, false),
        field("rejected_logp", DataType::Float64, false),
        field("chosen_tokens", DataType::Int64, false),
        field("rejected_tokens", DataType::Int64, false),
    ]))
}

/// Writes a `reference_logprobs` table.
pub fn write_reference(
    path: &Path,
    rows: &[(String, ReferenceLogprobs)],
) -> Result<(), TableError> {
    table::write_table(path, reference_schema(), Layout::Snappy, rows, |c| {
        vec![
            table::text(c.iter().map(|(id, _)| id.as_str())),
            table::f64s(c.iter().map(|(_, r)| r.chosen)),
            table::f64s(c.iter().map(|(_, r)| r.rejected)),
            table::opt_i64(c.iter().map(|(_, r)| Some(r.chosen_tokens as i64))),
            table::opt_i64(c.iter().map(|(_, r)| Some(r.rejected_tokens as i64))),
        ]
    })
}

/// Reads a `reference_logprobs` table.
pub fn read_reference(path: &Path) -> Result<HashMap<String, ReferenceLogprobs>, TableError> {
    let rows = table::read_table(path, |c| {
        let (id, lc, lr) = (c.text("pair_id")?, c.f64("chosen_logp")?, c.f64("rejected_logp")?);
        let (tc, tr) = (c.i64("chosen_tokens")?, c.i64("rejected_tokens")?);
        Ok((0..c.len())
            .map(|i| {
                let r = ReferenceLogprobs {
                    chosen: lc(i).unwrap_or(0.0),
                    rejected: lr(i).unwrap_or(0.0),
                    chosen_tokens: tc(i).unwrap_or(0) as usize,
                    rejected_tokens: tr(i).unwrap_or(0) as usize,
                };
                (id(i).unwrap_or_default(), r)
            })
            .collect::<Vec<_>>())
    })?;
    Ok(rows.into_iter().collect())
}

/// Reference log-probabilities of one pair: summed over the reply, and the reply's token count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReferenceLogprobs {
    /// Sum for the chosen reply.
    pub chosen: f64,
    /// Sum for the rejected reply.
    pub rejected: f64,
    /// Tokens of the chosen reply.
    pub chosen_tokens: usize,
    /// Tokens of the rejected reply.
    pub rejected_tokens: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_logprobs_round_trip_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let r = ReferenceLogprobs {
            chosen: -3.5,
            rejected: -7.0,
            chosen_tokens: 4,
            rejected_tokens: 9,
        };
        write_reference(&path, &[("s:1".into(), r)]).unwrap();
        assert_eq!(read_reference(&path).unwrap(), HashMap::from([("s:1".to_string(), r)]));
        crate::table::check_schema_file("reference_logprobs", &reference_schema());
    }
}
