//! OpenAI chat fine-tuning JSON lines: `{"messages": [{"role": "system"|"user"|"assistant", "content"}]}`,
//! with an optional `id`. The conversation must end with an assistant turn.
//!
//! One user turn makes an `instruction` example, more make a `dialogue`.

use serde_json::Value;

use crate::ingest::normalize;
use crate::ingest::record::{json_lines, show, type_name, Fields, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// Parses an OpenAI chat JSON-lines file.
pub fn parse(input: &FileInput<'_>) -> Vec<Parsed> {
    json_lines(input, record)
}

/// Reads a list of chat turns from `field`, each role checked and each content normalized.
pub fn messages(value: Option<&Value>, field: &str) -> Result<Vec<Message>, RecordError> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(RecordError::field(
                field,
                format!("expected an array, got {}", type_name(other)),
            ))
        }
        None => return Err(RecordError::field(field, "missing")),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let turn = Fields::of(item)
            .map_err(|e| RecordError::field(&format!("{field}[{i}]"), e.message))?;
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "user" | "assistant") {
            let got = turn.get("role").map(show).unwrap_or_else(|| "nothing".into());
            return Err(RecordError::field(
                &format!("{field}[{i}].role"),
                format!("expected system, user or assistant, got {got}"),
            ));
        }
        let content = match turn.get("content") {
            Some(Value::String(s)) => normalize::text(s),
            Some(other) => {
                let msg = format!("expected a string, got {}", type_name(other));
                return Err(RecordError::field(&format!("{field}[{i}].content"), msg));
            }
            None => return Err(RecordError::field(&format!("{field}[{i}].content"), "missing")),
        };
        if content.is_empty() {
            return Err(RecordError::field(&format!("{field}[{i}].content"), "empty"));
        }
        out.push(Message::new(role, content));
    }
    if out.is_empty() {
        return Err(RecordError::field(field, "empty"));
    }
    Ok(out)
}

fn record(f: &Fields<'_>) -> Result<Example, RecordError> {
    let messages = messages(f.get("messages"), "messages")?;
    let last = messages.last().map(|m| m.role.as_str()).unwrap_or("");
    if last != "assistant" {
        return Err(RecordError::field(
            "messages",
            format!("expected the last turn from the assistant, got {last:?}"),
        ));
    }
    let users = messages.iter().filter(|m| m.role == "user").count();
    if users == 0 {
        return Err(RecordError::field("messages", "no user turn"));
    }
    let task = if users == 1 { Task::Instruction } else { Task::Dialogue };
    Ok(Example {
        id: f.id("id")?.unwrap_or_default(),
        task: task.as_str().into(),
        messages,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Example, RecordError> {
        parse(&FileInput { display: "c.jsonl", text: line, stem: "c" }).remove(0).result
    }

    #[test]
    fn reads_and_checks_turns() {
        let e = one(r#"{"messages": [{"role": "system", "content": "You are a careful clinician."}, {"role": "user", "content": "Can I take ibuprofen with lisinopril?"}, {"role": "assistant", "content": "Occasional use is usually fine; ask your doctor."}]}"#).unwrap();
        assert_eq!(e.task, "instruction");
        assert_eq!(e.messages.len(), 3);
        let err = one(r#"{"messages": [{"role": "patient", "content": "hi"}]}"#).unwrap_err();
        assert_eq!(
            err.reason(),
            r#"field "messages[0].role": expected system, user or assistant, got "patient""#
        );
        let err = one(r#"{"messages": [{"role": "user", "content": "hi"}]}"#).unwrap_err();
        assert_eq!(
            err.reason(),
            r#"field "messages": expected the last turn from the assistant, got "user""#
        );
    }
}
