//! What every format parser shares: the file it reads, one parsed record, and the errors that name
//! the place (`file:line: field "cop": expected 1..4, got 7`).

use serde_json::{Map, Value};

use crate::ingest::normalize;
use crate::kinds::examples::Example;

/// A problem with one record: it stops the stage or, under `on_error: quarantine`, is rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// The offending field, when one is to blame.
    pub field: Option<String>,
    /// What is wrong, e.g. `expected 1..4, got 7`.
    pub message: String,
}

impl RecordError {
    /// An error in `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        RecordError { field: Some(field.to_string()), message: message.into() }
    }
    /// An error in the record as a whole (bad syntax, wrong shape).
    pub fn record(message: impl Into<String>) -> Self {
        RecordError { field: None, message: message.into() }
    }
    /// The reason as shown after `file:line: `.
    pub fn reason(&self) -> String {
        match &self.field {
            Some(f) => format!("field {f:?}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// A problem with a whole file (unreadable, not JSON at all): always stops the stage, since its records
/// cannot even be counted.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct FileError {
    /// The path as written in the params.
    pub path: String,
    /// 1-based line of the problem (1 when unknown).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One file handed to a format parser.
#[derive(Clone, Debug)]
pub struct FileInput<'a> {
    /// The path as shown in origins and errors (as written in the params, plus the file inside a folder).
    pub display: &'a str,
    /// The file's text.
    pub text: &'a str,
    /// The file name without folders and extension (MMLU takes its subject from it).
    pub stem: &'a str,
}

impl FileInput<'_> {
    /// A whole-file error at `line`.
    pub fn error(&self, line: usize, message: impl Into<String>) -> FileError {
        FileError { path: self.display.to_string(), line, message: message.into() }
    }
}

/// One record as a parser saw it: where it starts, its raw text, and the example or the error.
#[derive(Clone, Debug)]
pub struct Parsed {
    /// 1-based line where the record starts.
    pub line: usize,
    /// The record's original text (a JSON line, a CSV row as JSON or, when its fields do not match the
    /// header, as written; a dialogue block).
    pub raw: String,
    /// The example with content fields filled; `id` holds the source's own id or is empty.
    pub result: Result<Example, RecordError>,
}

/// The fields of one JSON object, read with errors that name the field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

/// The JSON type of a value, as error messages name it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    /// A JSON value as an object.
    pub fn of(v: &'a Value) -> Result<Self, RecordError> {
        match v {
            Value::Object(m) => Ok(Fields(m)),
            other => Err(RecordError::record(format!(
                "expected a JSON object, got {}",
                type_name(other)
            ))),
        }
    }
    /// The raw value of a field, if present and not null.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
    /// A required, non-empty string, normalized.
    pub fn text(&self, name: &str) -> Result<String, RecordError> {
        match self.get(name) {
            None => Err(RecordError::field(name, "missing")),
            Some(Value::String(s)) => {
                let t = normalize::text(s);
                if t.is_empty() {
                    Err(RecordError::field(name, "empty"))
                } else {
                    Ok(t)
                }
            }
            Some(other) => Err(RecordError::field(
                name,
                format!("expected a string, got {}", type_name(other)),
            )),
        }
    }
    /// An optional string (absent, null or blank is `None`), normalized; numbers are written as text.
    pub fn opt_text(&self, name: &str) -> Result<Option<String>, RecordError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(normalize::optional(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(RecordError::field(
                name,
                format!("expected a string, got {}", type_name(other)),
            )),
        }
    }
    /// A required integer (a JSON number, or a string of digits as some dumps write it).
    pub fn int(&self, name: &str) -> Result<i64, RecordError> {
        match self.get(name) {
            None => Err(RecordError::field(name, "missing")),
            Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64().unwrap_or_default()),
            Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => {
                Ok(s.trim().parse().unwrap_or_default())
            }
            Some(other) => {
                Err(RecordError::field(name, format!("expected an integer, got {}", show(other))))
            }
        }
    }
    /// An id field: a string or a number, as text.
    pub fn id(&self, name: &str) -> Result<Option<String>, RecordError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(normalize::optional(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(RecordError::field(
                name,
                format!("expected a string or number, got {}", type_name(other)),
            )),
        }
    }
}

/// A value as error messages quote it: strings quoted, short JSON otherwise.
pub fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// Parses one JSON line, mapping a syntax error to a record error.
pub fn json_line(line: &str) -> Result<Value, RecordError> {
    serde_json::from_str(line).map_err(|e| RecordError::record(format!("invalid JSON: {e}")))
}

/// Parses every non-blank line of a JSON-lines file with `record`, in parallel, in file order.
pub fn json_lines<F>(input: &FileInput<'_>, record: F) -> Vec<Parsed>
where
    F: Fn(&Fields<'_>) -> Result<Example, RecordError> + Sync,
{
    use rayon::prelude::*;
    numbered_lines(input.text)
        .into_par_iter()
        .map(|(line, raw)| Parsed {
            line,
            raw: raw.to_string(),
            result: json_line(raw).and_then(|v| record(&Fields::of(&v)?)),
        })
        .collect()
}

/// Like [`json_lines`], trying `typed` first on each line: a format's fast path for lines of its usual
/// shape, which must build exactly what `record` builds, and returns `None` to leave a line to `record`.
pub fn json_lines_typed<T, F>(input: &FileInput<'_>, typed: T, record: F) -> Vec<Parsed>
where
    T: Fn(&str) -> Option<Example> + Sync,
    F: Fn(&Fields<'_>) -> Result<Example, RecordError> + Sync,
{
    use rayon::prelude::*;
    numbered_lines(input.text)
        .into_par_iter()
        .map(|(line, raw)| Parsed {
            line,
            raw: raw.to_string(),
            result: typed(raw)
                .map_or_else(|| json_line(raw).and_then(|v| record(&Fields::of(&v)?)), Ok),
        })
        .collect()
}

/// Splits text into its non-blank lines with 1-based line numbers.
pub fn numbered_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
        .collect()
}

/// Byte offsets at which lines start, to turn an offset into a line number.
pub struct LineIndex(Vec<usize>);

impl LineIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }
    /// The 1-based line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&s| s <= offset)
    }
    /// The line of `part`, a subslice of `text` (as serde_json's borrowed `RawValue` is).
    pub fn line_of(&self, text: &str, part: &str) -> usize {
        let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        self.line(offset.min(text.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_read_well() {
        let v: Value = serde_json::json!({"cop": 7, "question": "", "opa": 3, "id": [1]});
        let f = Fields::of(&v).unwrap();
        assert_eq!(f.text("question").unwrap_err().reason(), r#"field "question": empty"#);
        assert_eq!(f.text("exp").unwrap_err().reason(), r#"field "exp": missing"#);
        assert_eq!(
            f.text("opa").unwrap_err().reason(),
            r#"field "opa": expected a string, got a number"#
        );
        assert_eq!(f.int("cop").unwrap(), 7);
        assert_eq!(
            f.id("id").unwrap_err().reason(),
            r#"field "id": expected a string or number, got an array"#
        );
        assert!(Fields::of(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn line_index_finds_lines() {
        let text = "ab\ncd\n\nef";
        let idx = LineIndex::new(text);
        assert_eq!(idx.line(0), 1);
        assert_eq!(idx.line(3), 2);
        assert_eq!(idx.line(7), 4);
        assert_eq!(idx.line_of(text, &text[8..]), 4);
        assert_eq!(numbered_lines(text), vec![(1, "ab"), (2, "cd"), (4, "ef")]);
    }
}
