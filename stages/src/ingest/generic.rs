//! Any JSON-lines or CSV (with a header row) file, read through a field mapping from the manifest:
//! which of the record's fields is the prompt, the response, the choices, the answer, and so on.
//!
//! Example: MedicationQA's `{"Question", "Answer", "Focus (Drug)"}` lines read with
//! `fields: {prompt: Question, response: Answer, subject: "Focus (Drug)"}` and `task: instruction`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ingest::csv_rows::{csv_rows, CsvRow};
use crate::ingest::normalize;
use crate::ingest::record::{json_lines, Fields, FileError, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// Which field of the source record fills which column. Names are the source's own field names.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FieldMap {
    /// The record's id; without it, ids are row numbers.
    #[serde(default)]
    pub id: Option<String>,
    /// A system prompt.
    #[serde(default)]
    pub system: Option<String>,
    /// The user's question or instruction (required).
    pub prompt: String,
    /// The reference reply; required for every task but `mcq` and `yes_no_maybe`.
    #[serde(default)]
    pub response: Option<String>,
    /// Supporting text (an abstract, a case).
    #[serde(default)]
    pub context: Option<String>,
    /// The option fields in label order, or one field holding an array of options.
    #[serde(default)]
    pub choices: Vec<String>,
    /// The gold answer: an option label or an option's text for `mcq`.
    #[serde(default)]
    pub answer: Option<String>,
    /// An explanation of the answer.
    #[serde(default)]
    pub explanation: Option<String>,
    /// The dispreferred reply, for `preference`.
    #[serde(default)]
    pub rejected: Option<String>,
    /// A subject or topic.
    #[serde(default)]
    pub subject: Option<String>,
    /// The split name.
    #[serde(default)]
    pub split: Option<String>,
}

/// Parses a JSON-lines file through `map`.
/// `prompts_only`: rows without a reference reply are allowed (the source has none).
pub fn parse_jsonl(
    input: &FileInput<'_>,
    map: &FieldMap,
    task: Task,
    prompts_only: bool,
) -> Vec<Parsed> {
    json_lines(input, |f| record(f, map, task, prompts_only))
}

/// Parses a CSV file with a header row through `map`.
pub fn parse_csv(
    input: &FileInput<'_>,
    map: &FieldMap,
    task: Task,
    prompts_only: bool,
) -> Result<Vec<Parsed>, FileError> {
    let mut rows = csv_rows(input)?.into_iter();
    let Some(CsvRow { fields: header, .. }) = rows.next() else { return Ok(Vec::new()) };
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
            let obj: Map<String, Value> = header
                .iter()
                .zip(&fields)
                .map(|(h, v)| (h.clone(), Value::String(v.clone())))
                .collect();
            let result = record(&Fields(&obj), map, task, prompts_only);
            Parsed { line, raw: Value::Object(obj).to_string(), result }
        })
        .collect())
}

fn opt(f: &Fields<'_>, name: &Option<String>) -> Result<Option<String>, RecordError> {
    name.as_ref().map_or(Ok(None), |n| f.opt_text(n))
}

fn choices(f: &Fields<'_>, names: &[String]) -> Result<Vec<String>, RecordError> {
    if let [one] = names {
        if let Some(Value::Array(items)) = f.get(one) {
            return items
                .iter()
                .enumerate()
                .map(|(i, v)| match v.as_str().map(normalize::text) {
                    Some(t) if !t.is_empty() => Ok(t),
                    _ => Err(RecordError::field(
                        &format!("{one}[{i}]"),
                        "expected a non-empty string",
                    )),
                })
                .collect();
        }
    }
    names.iter().map(|n| f.text(n)).collect()
}

fn record(
    f: &Fields<'_>,
    map: &FieldMap,
    task: Task,
    prompts_only: bool,
) -> Result<Example, RecordError> {
    let mut messages = Vec::new();
    if let Some(system) = opt(f, &map.system)? {
        messages.push(Message::new("system", system));
    }
    messages.push(Message::new("user", f.text(&map.prompt)?));
    let needs_reply = !prompts_only && !matches!(task, Task::Mcq | Task::YesNoMaybe);
    match &map.response {
        Some(r) if needs_reply => messages.push(Message::new("assistant", f.text(r)?)),
        Some(r) => messages.extend(f.opt_text(r)?.map(|t| Message::new("assistant", t))),
        None if needs_reply => {
            return Err(RecordError::field(
                "response",
                format!("task {} needs a response field", task.as_str()),
            ))
        }
        None => {}
    }
    let choices = choices(f, &map.choices)?;
    let mut answer = opt(f, &map.answer)?;
    if task == Task::Mcq {
        let field = map.answer.as_deref().unwrap_or("answer");
        if choices.len() < 2 {
            return Err(RecordError::field(
                field,
                format!("an mcq needs at least 2 choices, got {}", choices.len()),
            ));
        }
        let given = answer.ok_or_else(|| RecordError::field(field, "missing"))?;
        let idx = normalize::label(&given, choices.len())
            .or_else(|| choices.iter().position(|c| *c == given))
            .ok_or_else(|| {
                let letters = normalize::letters(choices.len());
                RecordError::field(
                    field,
                    format!("expected one of {letters} or an option's text, got {given:?}"),
                )
            })?;
        answer = Some(normalize::letter(idx));
    }
    let rejected = match (&map.rejected, task) {
        (Some(r), _) => Some(f.text(r)?),
        (None, Task::Preference) => {
            return Err(RecordError::field("rejected", "task preference needs a rejected field"))
        }
        (None, _) => None,
    };
    Ok(Example {
        id: map.id.as_ref().map_or(Ok(None), |n| f.id(n))?.unwrap_or_default(),
        task: task.as_str().into(),
        messages,
        context: opt(f, &map.context)?,
        choices,
        answer,
        explanation: opt(f, &map.explanation)?,
        rejected,
        subject: opt(f, &map.subject)?,
        split: opt(f, &map.split)?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medicationqa_through_a_mapping() {
        let map = FieldMap {
            prompt: "Question".into(),
            response: Some("Answer".into()),
            subject: Some("Focus (Drug)".into()),
            ..Default::default()
        };
        let text = r#"{"Question": "what is morphine", "Focus (Drug)": "morphine", "Answer": "An opioid pain medication."}
{"Question": "how to store insulin", "Answer": ""}"#;
        let rows = parse_jsonl(
            &FileInput { display: "m.jsonl", text, stem: "m" },
            &map,
            Task::Instruction,
            false,
        );
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.subject.as_deref(), Some("morphine"));
        assert_eq!(e.messages[1].content, "An opioid pain medication.");
        assert_eq!(rows[1].result.as_ref().unwrap_err().reason(), r#"field "Answer": empty"#);
    }

    #[test]
    fn prompts_only_rows_have_no_reply() {
        let map = FieldMap { prompt: "question".into(), ..Default::default() };
        let text = r#"{"question": "How should Abacavir be used and what is the dosage?"}"#;
        let input = FileInput { display: "d.jsonl", text, stem: "d" };
        let rows = parse_jsonl(&input, &map, Task::Instruction, true);
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.messages.len(), 1);
        assert_eq!(e.messages[0].role, "user");
        // Without the flag, a missing response is the mapping's mistake.
        let rows = parse_jsonl(&input, &map, Task::Instruction, false);
        assert_eq!(
            rows[0].result.as_ref().unwrap_err().reason(),
            r#"field "response": task instruction needs a response field"#
        );
    }

    #[test]
    fn csv_mcq_answer_by_text() {
        let map = FieldMap {
            prompt: "q".into(),
            choices: vec!["a".into(), "b".into(), "c".into()],
            answer: Some("ans".into()),
            ..Default::default()
        };
        let text = "q,a,b,c,ans\nFirst-line drug for hypertension in a diabetic?,ACE inhibitor,Beta blocker,Loop diuretic,ACE inhibitor\nq2,x,y,z,w\n";
        let rows =
            parse_csv(&FileInput { display: "g.csv", text, stem: "g" }, &map, Task::Mcq, false)
                .unwrap();
        assert_eq!(rows[0].result.as_ref().unwrap().answer.as_deref(), Some("A"));
        assert_eq!(rows[1].line, 3);
        assert_eq!(
            rows[1].result.as_ref().unwrap_err().reason(),
            r#"field "ans": expected one of A, B, C or an option's text, got "w""#
        );
    }
}
