//! Arrow schemas and Parquet I/O of the table artifact kinds these stages write: `examples`,
//! `rejected` (ingest's quarantine) and `removed` (what dedupe dropped, and why).
//!
//! The schemas under `schemas/` are these, in arrow-schema's serde JSON form; a test keeps them equal.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, ListArray, RecordBatch, StringArray, StringBuilder,
    StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::example::{Example, Message};

/// Rows per record batch and Parquet row group.
const BATCH_ROWS: usize = 65_536;

/// An error reading or writing a table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Parquet or Arrow failed.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

fn example_fields() -> Vec<Field> {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    let list = |name: &str, item: DataType| {
        Field::new(name, DataType::List(Arc::new(Field::new_list_field(item, false))), false)
    };
    vec![
        text("id", false),
        text("source", false),
        text("task", false),
        list("messages", DataType::Struct(message_fields())),
        text("context", true),
        list("choices", DataType::Utf8),
        text("answer", true),
        text("explanation", true),
        text("rejected", true),
        text("subject", true),
        text("split", true),
        text("origin", false),
        text("original", false),
        text("hash", false),
    ]
}

/// The Arrow schema of the `examples` artifact kind (`schemas/examples.json`).
pub fn examples_schema() -> SchemaRef {
    Arc::new(Schema::new(example_fields()))
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

fn strings<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = StringBuilder::new();
    for s in it {
        b.append_value(s);
    }
    Arc::new(b.finish())
}

fn opt_strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}

fn example_columns(rows: &[&Example]) -> Vec<ArrayRef> {
    let lengths = rows.iter().map(|e| e.messages.len());
    let msgs = rows.iter().flat_map(|e| e.messages.iter());
    let messages = StructArray::new(
        message_fields(),
        vec![
            strings(msgs.clone().map(|m| m.role.as_str())),
            strings(msgs.map(|m| m.content.as_str())),
        ],
        None,
    );
    let item = |t| Arc::new(Field::new_list_field(t, false));
    let messages = ListArray::new(
        item(DataType::Struct(message_fields())),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(messages),
        None,
    );
    let choices = strings(rows.iter().flat_map(|e| e.choices.iter().map(String::as_str)));
    let choices = ListArray::new(
        item(DataType::Utf8),
        OffsetBuffer::from_lengths(rows.iter().map(|e| e.choices.len())),
        choices,
        None,
    );
    vec![
        strings(rows.iter().map(|e| e.id.as_str())),
        strings(rows.iter().map(|e| e.source.as_str())),
        strings(rows.iter().map(|e| e.task.as_str())),
        Arc::new(messages),
        opt_strings(rows.iter().map(|e| e.context.as_deref())),
        Arc::new(choices),
        opt_strings(rows.iter().map(|e| e.answer.as_deref())),
        opt_strings(rows.iter().map(|e| e.explanation.as_deref())),
        opt_strings(rows.iter().map(|e| e.rejected.as_deref())),
        opt_strings(rows.iter().map(|e| e.subject.as_deref())),
        opt_strings(rows.iter().map(|e| e.split.as_deref())),
        strings(rows.iter().map(|e| e.origin.as_str())),
        strings(rows.iter().map(|e| e.original.as_str())),
        strings(rows.iter().map(|e| e.hash.as_str())),
    ]
}

/// Writes `rows` with `schema`, building each batch's columns with `columns`.
fn write<T>(
    path: &Path,
    schema: SchemaRef,
    rows: &[T],
    columns: impl Fn(&[T]) -> Vec<ArrayRef>,
) -> Result<(), TableError> {
    let fmt = |e: &dyn std::fmt::Display| TableError::Format {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = File::create(path)
        .map_err(|source| TableError::Io { path: path.display().to_string(), source })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_size(BATCH_ROWS)
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| fmt(&e))?;
    for chunk in rows.chunks(BATCH_ROWS) {
        let batch = RecordBatch::try_new(schema.clone(), columns(chunk)).map_err(|e| fmt(&e))?;
        writer.write(&batch).map_err(|e| fmt(&e))?;
    }
    writer.close().map_err(|e| fmt(&e))?;
    Ok(())
}

/// Writes an `examples` table.
pub fn write_examples(path: &Path, rows: &[Example]) -> Result<(), TableError> {
    write(path, examples_schema(), rows, |chunk| example_columns(&chunk.iter().collect::<Vec<_>>()))
}

/// Writes a `rejected` table.
pub fn write_rejected(path: &Path, rows: &[Rejection]) -> Result<(), TableError> {
    write(path, rejected_schema(), rows, |chunk| {
        vec![
            strings(chunk.iter().map(|r| r.source.as_str())),
            strings(chunk.iter().map(|r| r.origin.as_str())),
            strings(chunk.iter().map(|r| r.reason.as_str())),
            strings(chunk.iter().map(|r| r.record.as_str())),
            opt_strings(chunk.iter().map(|r| r.record_base64.as_deref())),
        ]
    })
}

/// Writes a `removed` table.
pub fn write_removed(path: &Path, rows: &[Removal]) -> Result<(), TableError> {
    write(path, removed_schema(), rows, |chunk| {
        let mut cols = example_columns(&chunk.iter().map(|r| &r.example).collect::<Vec<_>>());
        cols.push(strings(chunk.iter().map(|r| r.reason.as_str())));
        cols.push(opt_strings(chunk.iter().map(|r| r.matched_id.as_deref())));
        cols.push(Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.score))));
        cols
    })
}

/// Reads an `examples` table (or any table with its columns, such as `removed`).
pub fn read_examples(path: &Path) -> Result<Vec<Example>, TableError> {
    let fmt = |m: String| TableError::Format { path: path.display().to_string(), message: m };
    let file = File::open(path)
        .map_err(|source| TableError::Io { path: path.display().to_string(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| fmt(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| fmt(e.to_string()))?;
        out.extend(batch_examples(&batch).map_err(fmt)?);
    }
    Ok(out)
}

fn batch_examples(batch: &RecordBatch) -> Result<Vec<Example>, String> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("not an examples table: no column {name:?}"))
    };
    let text = |name: &str| -> Result<&StringArray, String> {
        col(name)?.as_string_opt::<i32>().ok_or_else(|| format!("column {name:?}: expected Utf8"))
    };
    let list = |name: &str| -> Result<&ListArray, String> {
        col(name)?.as_list_opt::<i32>().ok_or_else(|| format!("column {name:?}: expected a list"))
    };
    let (id, source, task, origin, original, hash) = (
        text("id")?,
        text("source")?,
        text("task")?,
        text("origin")?,
        text("original")?,
        text("hash")?,
    );
    let opt = ["context", "answer", "explanation", "rejected", "subject", "split"].map(text);
    let [context, answer, explanation, rejected, subject, split] = opt;
    let (context, answer, explanation, rejected, subject, split) =
        (context?, answer?, explanation?, rejected?, subject?, split?);
    let (messages, choices) = (list("messages")?, list("choices")?);
    let msg = messages.values().as_struct_opt().ok_or("column \"messages\": expected structs")?;
    let role = msg
        .column_by_name("role")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or("messages: no role")?;
    let content = msg
        .column_by_name("content")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or("messages: no content")?;
    let choice_values =
        choices.values().as_string_opt::<i32>().ok_or("column \"choices\": expected strings")?;
    let get = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
    Ok((0..batch.num_rows())
        .map(|i| {
            let m = messages.value_offsets();
            let c = choices.value_offsets();
            Example {
                id: id.value(i).into(),
                source: source.value(i).into(),
                task: task.value(i).into(),
                messages: (m[i] as usize..m[i + 1] as usize)
                    .map(|j| Message {
                        role: role.value(j).into(),
                        content: content.value(j).into(),
                    })
                    .collect(),
                context: get(context, i),
                choices: (c[i] as usize..c[i + 1] as usize)
                    .map(|j| choice_values.value(j).to_string())
                    .collect(),
                answer: get(answer, i),
                explanation: get(explanation, i),
                rejected: get(rejected, i),
                subject: get(subject, i),
                split: get(split, i),
                origin: origin.value(i).into(),
                original: original.value(i).into(),
                hash: hash.value(i).into(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set `MEDALIGN_UPDATE_SCHEMAS=1` to rewrite `schemas/*.json` from the code.
    #[test]
    fn schema_files_match_the_code() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        for (name, schema) in [
            ("examples", examples_schema()),
            ("rejected", rejected_schema()),
            ("removed", removed_schema()),
        ] {
            let json = serde_json::to_string_pretty(schema.as_ref()).unwrap() + "\n";
            let path = dir.join(format!("{name}.json"));
            if std::env::var_os("MEDALIGN_UPDATE_SCHEMAS").is_some() {
                std::fs::write(&path, &json).unwrap();
            }
            let on_disk = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                on_disk,
                json,
                "{} is stale: run with MEDALIGN_UPDATE_SCHEMAS=1",
                path.display()
            );
            let parsed: Schema = serde_json::from_str(&on_disk).unwrap();
            assert_eq!(&parsed, schema.as_ref());
        }
    }

    #[test]
    fn examples_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let rows = vec![
            Example {
                id: "medqa:0".into(),
                source: "medqa".into(),
                task: "mcq".into(),
                messages: vec![Message::new("user", "Which drug reverses heparin?")],
                choices: vec!["Protamine sulfate".into(), "Vitamin K".into()],
                answer: Some("A".into()),
                origin: "medqa.jsonl:1".into(),
                original: "{}".into(),
                ..Default::default()
            }
            .with_hash(),
            Example {
                id: "chat:1".into(),
                source: "chat".into(),
                task: "instruction".into(),
                messages: vec![Message::new("user", "Hi"), Message::new("assistant", "Hello.")],
                context: Some("ctx".into()),
                origin: "c.jsonl:2".into(),
                original: "{}".into(),
                ..Default::default()
            }
            .with_hash(),
        ];
        write_examples(&path, &rows).unwrap();
        assert_eq!(read_examples(&path).unwrap(), rows);
        let file = File::open(&path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(builder.schema().as_ref(), examples_schema().as_ref());
    }
}
