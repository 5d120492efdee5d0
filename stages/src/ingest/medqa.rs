//! MedQA (jind11/MedQA), US 4-option JSON lines:
//! `{"question", "options": {"A": .., "D": ..}, "answer", "answer_idx": "B", "meta_info": "step1"}`.
//!
//! The 5-option variant (`A`..`E`) reads the same way. `answer` must be the text of `answer_idx`.

use serde_json::Value;

use crate::ingest::normalize;
use crate::ingest::record::{json_lines, type_name, Fields, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// Parses a MedQA JSON-lines file.
pub fn parse(input: &FileInput<'_>) -> Vec<Parsed> {
    json_lines(input, record)
}

fn record(f: &Fields<'_>) -> Result<Example, RecordError> {
    let question = f.text("question")?;
    let options = match f.get("options") {
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(RecordError::field(
                "options",
                format!("expected an object, got {}", type_name(other)),
            ))
        }
        None => return Err(RecordError::field("options", "missing")),
    };
    let mut choices = Vec::with_capacity(options.len());
    for (i, (key, value)) in options.iter().enumerate() {
        if normalize::label(key, options.len()) != Some(i) {
            let expected = normalize::letters(options.len());
            return Err(RecordError::field(
                "options",
                format!("expected keys {expected} in order, got {key:?}"),
            ));
        }
        match value.as_str().map(normalize::text) {
            Some(t) if !t.is_empty() => choices.push(t),
            _ => {
                return Err(RecordError::field(
                    "options",
                    format!("option {key}: expected a non-empty string"),
                ))
            }
        }
    }
    if choices.len() < 2 {
        return Err(RecordError::field(
            "options",
            format!("expected at least 2 options, got {}", choices.len()),
        ));
    }
    let label = f.text("answer_idx")?;
    let idx = normalize::label(&label, choices.len()).ok_or_else(|| {
        RecordError::field(
            "answer_idx",
            format!("expected one of {}, got {label:?}", normalize::letters(choices.len())),
        )
    })?;
    if let Some(answer) = f.opt_text("answer")? {
        if answer != choices[idx] {
            return Err(RecordError::field(
                "answer",
                format!("{answer:?} is not option {} ({:?})", normalize::letter(idx), choices[idx]),
            ));
        }
    }
    Ok(Example {
        task: Task::Mcq.as_str().into(),
        messages: vec![Message::new("user", question)],
        choices,
        answer: Some(normalize::letter(idx)),
        subject: f.opt_text("meta_info")?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Example, RecordError> {
        let input = FileInput { display: "t.jsonl", text: line, stem: "t" };
        parse(&input).remove(0).result
    }

    #[test]
    fn reads_a_record() {
        let e = one(r#"{"question": "Drug of choice for absence seizures in a 7-year-old?", "options": {"A": "Ethosuximide", "B": "Phenytoin", "C": "Carbamazepine", "D": "Gabapentin"}, "answer": "Ethosuximide", "answer_idx": "A", "meta_info": "step2&3"}"#).unwrap();
        assert_eq!(e.choices, ["Ethosuximide", "Phenytoin", "Carbamazepine", "Gabapentin"]);
        assert_eq!(e.answer.as_deref(), Some("A"));
        assert_eq!(e.subject.as_deref(), Some("step2&3"));
    }

    #[test]
    fn rejects_inconsistent_answers() {
        let base =
            r#"{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "y", "answer_idx": "#;
        assert_eq!(
            one(&format!("{base}\"E\"}}")).unwrap_err().reason(),
            r#"field "answer_idx": expected one of A, B, got "E""#
        );
        assert_eq!(
            one(&format!("{base}\"A\"}}")).unwrap_err().reason(),
            r#"field "answer": "y" is not option A ("x")"#
        );
    }
}
