//! Checks a published Parquet table against its artifact kind's Arrow schema.

use std::path::Path;

use arrow_schema::{Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Compares the schema in `parquet`'s footer with `schema_json` (an Arrow `Schema` as JSON).
/// Field names, order, types and nullability must match; metadata is ignored.
pub fn check_table_schema(parquet: &Path, schema_json: &str) -> Result<(), String> {
    let expected: Schema = serde_json::from_str(schema_json)
        .map_err(|e| format!("the kind's schema JSON is invalid: {e}"))?;
    let file = std::fs::File::open(parquet).map_err(|e| format!("{}: {e}", parquet.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{}: not a Parquet file: {e}", parquet.display()))?;
    let actual = builder.schema();
    let mut problems = Vec::new();
    for (i, want) in expected.fields().iter().enumerate() {
        match actual.field_with_name(want.name()) {
            Err(_) => {
                problems.push(format!("missing column \"{}\" ({})", want.name(), describe(want)))
            }
            Ok(got) => {
                if !same_type(got, want) {
                    problems.push(format!(
                        "column \"{}\" is {}, expected {}",
                        want.name(),
                        describe(got),
                        describe(want)
                    ));
                }
                if actual.index_of(want.name()).ok() != Some(i) {
                    problems.push(format!("column \"{}\" is not at position {i}", want.name()));
                }
            }
        }
    }
    for got in actual.fields() {
        if expected.field_with_name(got.name()).is_err() {
            problems.push(format!("unexpected column \"{}\"", got.name()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{} does not match the schema: {}", parquet.display(), problems.join("; ")))
    }
}

fn describe(f: &Field) -> String {
    format!("{}{}", f.data_type(), if f.is_nullable() { ", nullable" } else { "" })
}

fn same_type(a: &Field, b: &Field) -> bool {
    a.is_nullable() == b.is_nullable() && a.data_type().equals_datatype(b.data_type())
}
