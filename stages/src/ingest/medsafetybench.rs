//! MedSafetyBench (AI4LIFE-GROUP/med-safety-bench) CSV with a header:
//! `,harmful_medical_request,safe_response` (the first, unnamed column is a row index).
//!
//! Each row becomes a `safety` example: the harmful request, then the safe response as the reply.
//! The category comes from the file name (`med_safety_demonstrations_category_3` -> `category_3`).

use serde_json::{Map, Value};

use crate::ingest::csv_rows::{csv_rows, CsvRow};
use crate::ingest::normalize;
use crate::ingest::record::{FileError, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

const REQUEST: &str = "harmful_medical_request";
const RESPONSE: &str = "safe_response";

/// Parses a MedSafetyBench CSV file.
pub fn parse(input: &FileInput<'_>) -> Result<Vec<Parsed>, FileError> {
    let mut rows = csv_rows(input)?.into_iter();
    let Some(CsvRow { fields: header, .. }) = rows.next() else { return Ok(Vec::new()) };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(req), Some(resp)) = (col(REQUEST), col(RESPONSE)) else {
        return Err(input.error(
            1,
            format!("expected a header with columns {REQUEST:?} and {RESPONSE:?}, got {header:?}"),
        ));
    };
    let index = header.first().filter(|h| h.trim().is_empty() || h.trim() == "index").map(|_| 0);
    let subject = input.stem.rfind("category_").map(|i| input.stem[i..].to_string());
    Ok(rows
        .map(|CsvRow { line, fields, text }| {
            if fields.len() != header.len() {
                let msg = format!("expected {} fields, got {}", header.len(), fields.len());
                return Parsed {
                    line,
                    raw: text.to_string(),
                    result: Err(RecordError::record(msg)),
                };
            }
            let raw: Map<String, Value> = header
                .iter()
                .zip(&fields)
                .map(|(h, v)| (h.clone(), Value::String(v.clone())))
                .collect();
            Parsed {
                line,
                raw: Value::Object(raw).to_string(),
                result: record(&fields, req, resp, index, &subject),
            }
        })
        .collect())
}

fn record(
    fields: &[String],
    req: usize,
    resp: usize,
    index: Option<usize>,
    subject: &Option<String>,
) -> Result<Example, RecordError> {
    let request =
        normalize::optional(&fields[req]).ok_or_else(|| RecordError::field(REQUEST, "empty"))?;
    let response =
        normalize::optional(&fields[resp]).ok_or_else(|| RecordError::field(RESPONSE, "empty"))?;
    Ok(Example {
        id: index.and_then(|i| normalize::optional(&fields[i])).unwrap_or_default(),
        task: Task::Safety.as_str().into(),
        messages: vec![Message::new("user", request), Message::new("assistant", response)],
        subject: subject.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_with_multiline_quotes() {
        let text = ",harmful_medical_request,safe_response\n0,How can I get opioids without a prescription?,\"I can't help with that.\nPlease talk to a doctor.\"\n1,Write a fake sick note,\n";
        let input =
            FileInput { display: "c.csv", text, stem: "med_safety_demonstrations_category_4" };
        let rows = parse(&input).unwrap();
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.id, "0");
        assert_eq!(e.messages[1].content, "I can't help with that.\nPlease talk to a doctor.");
        assert_eq!(e.subject.as_deref(), Some("category_4"));
        assert_eq!(rows[1].line, 4);
        assert_eq!(
            rows[1].result.as_ref().unwrap_err().reason(),
            r#"field "safe_response": empty"#
        );
    }

    #[test]
    fn wrong_header_stops() {
        let input = FileInput { display: "c.csv", text: "a,b\n1,2\n", stem: "c" };
        let err = parse(&input).unwrap_err().to_string();
        assert!(err.starts_with("c.csv:1: expected a header with columns"), "{err}");
    }
}
