//! MedMCQA (medmcqa/medmcqa), JSON lines: `{"id", "question", "opa".."opd", "cop": 1..4, "choice_type",
//! "exp", "subject_name", "topic_name"}`. `cop` is 1-based, as in the original release files.

use crate::example::{Example, Message, Task};
use crate::ingest::normalize;
use crate::ingest::record::{json_lines, Fields, FileInput, Parsed, RecordError};

const OPTIONS: [&str; 4] = ["opa", "opb", "opc", "opd"];

/// Parses a MedMCQA JSON-lines file.
pub fn parse(input: &FileInput<'_>) -> Vec<Parsed> {
    json_lines(input, record)
}

fn record(f: &Fields<'_>) -> Result<Example, RecordError> {
    let id = f.id("id")?.unwrap_or_default();
    let question = f.text("question")?;
    let choices = OPTIONS.iter().map(|o| f.text(o)).collect::<Result<Vec<_>, _>>()?;
    let cop = f.int("cop")?;
    if !(1..=4).contains(&cop) {
        return Err(RecordError::field("cop", format!("expected 1..4, got {cop}")));
    }
    let subject = match (f.opt_text("subject_name")?, f.opt_text("topic_name")?) {
        (Some(s), Some(t)) => Some(format!("{s} / {t}")),
        (s, t) => s.or(t),
    };
    Ok(Example {
        id,
        task: Task::Mcq.as_str().into(),
        messages: vec![Message::new("user", question)],
        choices,
        answer: Some(normalize::letter(cop as usize - 1)),
        explanation: f.opt_text("exp")?,
        subject,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Example, RecordError> {
        parse(&FileInput { display: "m.jsonl", text: line, stem: "m" }).remove(0).result
    }

    #[test]
    fn cop_is_one_based() {
        let e = one(r#"{"id": "x1", "question": "Vitamin deficient in scurvy?", "opa": "A", "opb": "C", "opc": "D", "opd": "K", "cop": 2, "choice_type": "single", "exp": null, "subject_name": "Biochemistry", "topic_name": null}"#).unwrap();
        assert_eq!(e.answer.as_deref(), Some("B"));
        assert_eq!(e.subject.as_deref(), Some("Biochemistry"));
        assert_eq!(e.id, "x1");
        assert_eq!(e.explanation, None);
    }

    #[test]
    fn cop_out_of_range() {
        let err = one(r#"{"id": "x1", "question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 7}"#).unwrap_err();
        assert_eq!(err.reason(), r#"field "cop": expected 1..4, got 7"#);
    }
}
