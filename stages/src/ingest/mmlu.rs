//! MMLU (hendrycks/test) CSV, no header: `question,A,B,C,D,answer_letter`. The subject comes from
//! the file name (`clinical_knowledge_dev.csv` -> `clinical_knowledge`), the split from its suffix.

use crate::ingest::csv_rows::{csv_rows, CsvRow};
use crate::ingest::normalize;
use crate::ingest::record::{FileError, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// The split suffixes MMLU file names end with.
const SPLITS: [&str; 4] = ["dev", "val", "test", "auxiliary_train"];

/// Subject and split from an MMLU file stem.
pub fn subject_and_split(stem: &str) -> (String, Option<String>) {
    for split in SPLITS {
        if let Some(subject) = stem.strip_suffix(&format!("_{split}")) {
            return (subject.to_string(), Some(split.to_string()));
        }
    }
    (stem.to_string(), None)
}

/// Parses an MMLU CSV file.
pub fn parse(input: &FileInput<'_>) -> Result<Vec<Parsed>, FileError> {
    let (subject, split) = subject_and_split(input.stem);
    Ok(csv_rows(input)?
        .into_iter()
        .map(|CsvRow { line, fields, .. }| Parsed {
            line,
            raw: serde_json::to_string(&fields).unwrap_or_default(),
            result: record(&fields, &subject, &split),
        })
        .collect())
}

fn record(
    fields: &[String],
    subject: &str,
    split: &Option<String>,
) -> Result<Example, RecordError> {
    if fields.len() != 6 {
        return Err(RecordError::record(format!(
            "expected 6 fields (question, A, B, C, D, answer), got {}",
            fields.len()
        )));
    }
    let question = normalize::text(&fields[0]);
    if question.is_empty() {
        return Err(RecordError::field("question", "empty"));
    }
    // MMLU has real options such as "0" or "None of the above", but never an empty one.
    let mut choices = Vec::with_capacity(4);
    for (i, f) in fields[1..5].iter().enumerate() {
        let t = normalize::text(f);
        if t.is_empty() {
            return Err(RecordError::field(&normalize::letter(i), "empty"));
        }
        choices.push(t);
    }
    let idx = normalize::label(&fields[5], 4).ok_or_else(|| {
        RecordError::field("answer", format!("expected one of A, B, C, D, got {:?}", fields[5]))
    })?;
    Ok(Example {
        task: Task::Mcq.as_str().into(),
        messages: vec![Message::new("user", question)],
        choices,
        answer: Some(normalize::letter(idx)),
        subject: Some(subject.to_string()),
        split: split.clone(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_from_file_name() {
        assert_eq!(
            subject_and_split("college_medicine_val"),
            ("college_medicine".into(), Some("val".into()))
        );
        assert_eq!(subject_and_split("anatomy"), ("anatomy".into(), None));
    }

    #[test]
    fn quoted_fields_and_bad_rows() {
        let text = "\"Which nerve, if cut, causes wrist drop?\",Radial,Ulnar,Median,Axillary,A\nq,a,b,c,d,F\nq,a,b,c,d\n";
        let rows =
            parse(&FileInput { display: "anatomy_dev.csv", text, stem: "anatomy_dev" }).unwrap();
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.messages[0].content, "Which nerve, if cut, causes wrist drop?");
        assert_eq!(e.subject.as_deref(), Some("anatomy"));
        assert_eq!(e.split.as_deref(), Some("dev"));
        assert_eq!(rows[1].line, 2);
        assert_eq!(
            rows[1].result.as_ref().unwrap_err().reason(),
            r#"field "answer": expected one of A, B, C, D, got "F""#
        );
        assert_eq!(
            rows[2].result.as_ref().unwrap_err().reason(),
            "expected 6 fields (question, A, B, C, D, answer), got 5"
        );
    }
}
