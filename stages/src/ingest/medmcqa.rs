//! MedMCQA (medmcqa/medmcqa), JSON lines: `{"id", "question", "opa".."opd", "cop": 1..4, "choice_type",
//! "exp", "subject_name", "topic_name"}`. `cop` is 1-based, as in the original release files.
//!
//! The release has 194k records, so lines of the usual shape take a typed path that borrows the
//! line's strings ([`Line`]); anything else (numbers where strings belong, bad values) takes the
//! general [`Fields`] path, which builds the same example or names the problem.

use std::borrow::Cow;

use serde::Deserialize;

use crate::ingest::normalize;
use crate::ingest::record::{json_lines_typed, Fields, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

const OPTIONS: [&str; 4] = ["opa", "opb", "opc", "opd"];

/// Parses a MedMCQA JSON-lines file.
pub fn parse(input: &FileInput<'_>) -> Vec<Parsed> {
    json_lines_typed(input, typed, record)
}

/// A MedMCQA line of the usual shape: string fields, an integer `cop`.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    question: Option<Cow<'a, str>>,
    #[serde(borrow)]
    opa: Option<Cow<'a, str>>,
    #[serde(borrow)]
    opb: Option<Cow<'a, str>>,
    #[serde(borrow)]
    opc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    opd: Option<Cow<'a, str>>,
    cop: Option<i64>,
    #[serde(borrow, default)]
    exp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subject_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    topic_name: Option<Cow<'a, str>>,
}

/// The example of a line of the usual shape, exactly as [`record`] builds it; `None` sends the line
/// to [`record`] (for its error message, or for shapes only the general path reads).
fn typed(raw: &str) -> Option<Example> {
    let line: Line<'_> = serde_json::from_str(raw).ok()?;
    let text =
        |s: &Option<Cow<'_, str>>| s.as_deref().map(normalize::text).filter(|t| !t.is_empty());
    let optional = |s: &Option<Cow<'_, str>>| s.as_deref().and_then(normalize::optional);
    let question = text(&line.question)?;
    let choices = vec![text(&line.opa)?, text(&line.opb)?, text(&line.opc)?, text(&line.opd)?];
    let cop = line.cop.filter(|c| (1..=4).contains(c))?;
    let subject = match (optional(&line.subject_name), optional(&line.topic_name)) {
        (Some(s), Some(t)) => Some(format!("{s} / {t}")),
        (s, t) => s.or(t),
    };
    Some(Example {
        id: optional(&line.id).unwrap_or_default(),
        task: Task::Mcq.as_str().into(),
        messages: vec![Message::new("user", question)],
        choices,
        answer: Some(normalize::letter(cop as usize - 1)),
        explanation: optional(&line.exp),
        subject,
        ..Default::default()
    })
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
    fn typed_path_builds_what_the_general_path_builds() {
        let lines = [
            r#"{"id": "x1", "question": " Vitamin  deficient in scurvy?", "opa": "A", "opb": "C", "opc": "D", "opd": "K", "cop": 2, "choice_type": "single", "exp": "Ascorbic\tacid", "subject_name": "Biochemistry", "topic_name": "Vitamins"}"#,
            r#"{"question": "Caf\u00e9 au lait?", "opa": "NF1", "opb": "TSC", "opc": "VHL", "opd": "MEN2", "cop": 1, "exp": " ", "topic_name": null}"#,
        ];
        for line in lines {
            let v = serde_json::from_str(line).unwrap();
            assert_eq!(typed(line), Some(record(&Fields::of(&v).unwrap()).unwrap()), "{line}");
        }
        for unusual in [
            r#"{"id": 7, "question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 1}"#,
            r#"{"question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": "3"}"#,
        ] {
            assert_eq!(typed(unusual), None);
            assert!(one(unusual).is_ok());
        }
    }

    #[test]
    fn cop_out_of_range() {
        let err = one(r#"{"id": "x1", "question": "q", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 7}"#).unwrap_err();
        assert_eq!(err.reason(), r#"field "cop": expected 1..4, got 7"#);
    }
}
