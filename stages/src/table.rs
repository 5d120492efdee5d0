//! The one table layer: Arrow column builders from row fields, typed column readers that name the
//! file and column when a table is not what it should be, and the Parquet files of every table
//! artifact kind (their schemas, rows and read/write live in [`crate::kinds`]).
//!
//! The schemas under `schemas/` are the kinds' schemas in arrow-schema's serde JSON form; a test per
//! kind keeps them equal.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, RecordBatch,
    StringArray, StructArray, UInt64Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type, SchemaRef, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::kinds::examples::Message;

/// Rows per record batch (and per row group in the [`Layout::Grouped`] layout).
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

/// How a kind's Parquet file is written. Each kind keeps the settings its files have always been
/// written with: the bytes, and so the content hashes that downstream cache keys take, stay the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Snappy, a row group per 65,536 rows (`examples`, `rejected`, `removed`).
    Grouped,
    /// Snappy, Parquet's default row-group size (`candidates`, `judgments`, `pairs`,
    /// `reference_logprobs`, training metrics).
    Snappy,
    /// Parquet's defaults, uncompressed, every row in one batch (`predictions`, `eval_metrics`).
    Plain,
}

impl Layout {
    fn properties(self) -> Option<WriterProperties> {
        match self {
            Layout::Grouped => Some(
                WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_size(BATCH_ROWS)
                    .build(),
            ),
            Layout::Snappy => {
                Some(WriterProperties::builder().set_compression(Compression::SNAPPY).build())
            }
            Layout::Plain => None,
        }
    }
}

/// A field of `data_type`.
pub fn field(name: &str, data_type: DataType, nullable: bool) -> Field {
    Field::new(name, data_type, nullable)
}

fn message_fields() -> Fields {
    Fields::from(vec![
        Field::new("role", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ])
}

/// A non-null list of `item`.
pub fn list_field(name: &str, item: DataType) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new_list_field(item, false))), false)
}

/// A chat: a list of `{role, content}` structs, as in `examples`.
pub fn messages_field(name: &str) -> Field {
    list_field(name, DataType::Struct(message_fields()))
}

/// Text column.
pub fn text<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    let mut b = arrow::array::StringBuilder::new();
    it.for_each(|s| b.append_value(s));
    Arc::new(b.finish())
}

/// Nullable text column.
pub fn opt_text<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}

/// Nullable Int64 column.
pub fn opt_i64(it: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(Int64Array::from_iter(it))
}

/// Nullable Float64 column.
pub fn opt_f64(it: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from_iter(it))
}

/// Float64 column.
pub fn f64s(it: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(it))
}

/// Nullable UInt64 column.
pub fn opt_u64(it: impl Iterator<Item = Option<u64>>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter(it))
}

/// Boolean column.
pub fn bools(it: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(BooleanArray::from_iter(it.map(Some)))
}

/// A column of chats.
pub fn messages<'a>(rows: impl Iterator<Item = &'a [Message]> + Clone) -> ArrayRef {
    let all = rows.clone().flat_map(|m| m.iter());
    let values = StructArray::new(
        message_fields(),
        vec![text(all.clone().map(|m| m.role.as_str())), text(all.map(|m| m.content.as_str()))],
        None,
    );
    let item = Arc::new(Field::new_list_field(DataType::Struct(message_fields()), false));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::from_lengths(rows.map(<[Message]>::len)),
        Arc::new(values),
        None,
    ))
}

/// A column of string lists.
pub fn string_lists<'a>(rows: impl Iterator<Item = &'a [String]> + Clone) -> ArrayRef {
    let values = text(rows.clone().flat_map(|r| r.iter().map(String::as_str)));
    let item = Arc::new(Field::new_list_field(DataType::Utf8, false));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::from_lengths(rows.map(<[String]>::len)),
        values,
        None,
    ))
}

/// Writes `rows` as one Parquet file with `schema`, laid out as `layout`.
pub fn write_table<T>(
    path: &Path,
    schema: SchemaRef,
    layout: Layout,
    rows: &[T],
    columns: impl Fn(&[T]) -> Vec<ArrayRef>,
) -> Result<(), TableError> {
    let fmt = |e: &dyn std::fmt::Display| TableError::Format {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let file = File::create(path)
        .map_err(|source| TableError::Io { path: path.display().to_string(), source })?;
    let mut writer =
        ArrowWriter::try_new(file, schema.clone(), layout.properties()).map_err(|e| fmt(&e))?;
    let batch_rows = if layout == Layout::Plain { rows.len().max(1) } else { BATCH_ROWS };
    for chunk in rows.chunks(batch_rows) {
        let batch = RecordBatch::try_new(schema.clone(), columns(chunk)).map_err(|e| fmt(&e))?;
        writer.write(&batch).map_err(|e| fmt(&e))?;
    }
    writer.close().map_err(|e| fmt(&e))?;
    Ok(())
}

/// Reads every row of a Parquet file, turning each batch into rows with `rows`.
pub fn read_table<T>(
    path: &Path,
    rows: impl Fn(&Columns<'_>) -> Result<Vec<T>, String>,
) -> Result<Vec<T>, TableError> {
    let fmt = |m: String| TableError::Format { path: path.display().to_string(), message: m };
    let file = File::open(path)
        .map_err(|source| TableError::Io { path: path.display().to_string(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
        .map_err(|e| fmt(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| fmt(e.to_string()))?;
        out.extend(rows(&Columns { batch: &batch }).map_err(fmt)?);
    }
    Ok(out)
}

/// Typed access to the columns of one record batch.
pub struct Columns<'a> {
    batch: &'a RecordBatch,
}

impl<'a> Columns<'a> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    fn col(&self, name: &str) -> Result<&'a ArrayRef, String> {
        self.batch.column_by_name(name).ok_or_else(|| format!("no column {name:?}"))
    }

    /// A Utf8 column: `get(i)` is `None` for nulls.
    pub fn text(&self, name: &str) -> Result<impl Fn(usize) -> Option<String> + 'a, String> {
        let a = self
            .col(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {name:?}: expected Utf8"))?;
        Ok(move |i| (!a.is_null(i)).then(|| a.value(i).to_string()))
    }

    /// An Int64 column.
    pub fn i64(&self, name: &str) -> Result<impl Fn(usize) -> Option<i64> + 'a, String> {
        let a = self
            .col(name)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| format!("column {name:?}: expected Int64"))?;
        Ok(move |i| (!a.is_null(i)).then(|| a.value(i)))
    }

    /// A UInt64 column.
    pub fn u64(&self, name: &str) -> Result<impl Fn(usize) -> Option<u64> + 'a, String> {
        let a = self
            .col(name)?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| format!("column {name:?}: expected UInt64"))?;
        Ok(move |i| (!a.is_null(i)).then(|| a.value(i)))
    }

    /// A Float64 column.
    pub fn f64(&self, name: &str) -> Result<impl Fn(usize) -> Option<f64> + 'a, String> {
        let a = self
            .col(name)?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| format!("column {name:?}: expected Float64"))?;
        Ok(move |i| (!a.is_null(i)).then(|| a.value(i)))
    }

    /// A Boolean column.
    pub fn bool(&self, name: &str) -> Result<impl Fn(usize) -> bool + 'a, String> {
        let a = self
            .col(name)?
            .as_boolean_opt()
            .ok_or_else(|| format!("column {name:?}: expected Boolean"))?;
        Ok(move |i| !a.is_null(i) && a.value(i))
    }

    /// A list-of-Utf8 column.
    pub fn strings(&self, name: &str) -> Result<impl Fn(usize) -> Vec<String> + 'a, String> {
        let list = self
            .col(name)?
            .as_list_opt::<i32>()
            .ok_or_else(|| format!("column {name:?}: expected a list"))?;
        let values = list
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("column {name:?}: expected strings"))?;
        Ok(move |i| {
            let o = list.value_offsets();
            (o[i] as usize..o[i + 1] as usize).map(|j| values.value(j).to_string()).collect()
        })
    }

    /// A chat column.
    pub fn messages(&self, name: &str) -> Result<impl Fn(usize) -> Vec<Message> + 'a, String> {
        let list = self
            .col(name)?
            .as_list_opt::<i32>()
            .ok_or_else(|| format!("column {name:?}: expected a list"))?;
        let s = list
            .values()
            .as_struct_opt()
            .ok_or_else(|| format!("column {name:?}: expected structs"))?;
        let part = |f: &str| {
            s.column_by_name(f)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| format!("{name}: no {f}"))
        };
        let (role, content) = (part("role")?, part("content")?);
        Ok(move |i| {
            let o = list.value_offsets();
            (o[i] as usize..o[i + 1] as usize)
                .map(|j| Message { role: role.value(j).into(), content: content.value(j).into() })
                .collect()
        })
    }
}

/// Test helper: `schemas/<name>.json` is `schema` in arrow-schema's serde form (set
/// `MEDALIGN_UPDATE_SCHEMAS=1` to rewrite it from the code).
#[cfg(test)]
pub(crate) fn check_schema_file(name: &str, schema: &arrow::datatypes::Schema) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas").join(format!("{name}.json"));
    let json = serde_json::to_string_pretty(schema).unwrap() + "\n";
    if std::env::var_os("MEDALIGN_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &json).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        on_disk,
        json,
        "{} is stale: run the tests with MEDALIGN_UPDATE_SCHEMAS=1",
        path.display()
    );
    let parsed: arrow::datatypes::Schema = serde_json::from_str(&on_disk).unwrap();
    assert_eq!(&parsed, schema);
}
