//! Preference pairs as JSON lines: the prompt as `prompt` (a string) or `messages` (chat turns), and
//! `chosen` / `rejected` replies, each a string or a list of turns ending with the assistant's (as in
//! UltraFeedback-binarized, where the lists repeat the prompt).
//!
//! The example's messages are the prompt turns then the chosen reply; `rejected` holds the other.

use serde_json::Value;

use crate::ingest::chat;
use crate::ingest::normalize;
use crate::ingest::record::{json_lines, type_name, Fields, FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// Parses a preference JSON-lines file.
pub fn parse(input: &FileInput<'_>) -> Vec<Parsed> {
    json_lines(input, record)
}

/// A reply given as a string or as turns: the turns before it (if any) and its text.
fn reply(f: &Fields<'_>, field: &str) -> Result<(Vec<Message>, String), RecordError> {
    match f.get(field) {
        Some(Value::String(_)) => Ok((Vec::new(), f.text(field)?)),
        Some(v @ Value::Array(_)) => {
            let mut turns = chat::messages(Some(v), field)?;
            let last = turns.pop().filter(|m| m.role == "assistant").ok_or_else(|| {
                RecordError::field(field, "expected the last turn from the assistant")
            })?;
            Ok((turns, last.content))
        }
        Some(other) => Err(RecordError::field(
            field,
            format!("expected a string or turns, got {}", type_name(other)),
        )),
        None => Err(RecordError::field(field, "missing")),
    }
}

fn record(f: &Fields<'_>) -> Result<Example, RecordError> {
    let (chosen_prefix, chosen) = reply(f, "chosen")?;
    let (_, rejected) = reply(f, "rejected")?;
    let mut messages = if f.get("prompt").is_some() {
        vec![Message::new("user", f.text("prompt")?)]
    } else if f.get("messages").is_some() {
        chat::messages(f.get("messages"), "messages")?
    } else if !chosen_prefix.is_empty() {
        chosen_prefix
    } else {
        return Err(RecordError::field(
            "prompt",
            "missing (give prompt, messages, or chosen as turns)",
        ));
    };
    if messages.last().map(|m| m.role.as_str()) != Some("user") {
        return Err(RecordError::field("prompt", "expected the prompt to end with a user turn"));
    }
    if chosen == rejected {
        return Err(RecordError::field("rejected", "same text as chosen"));
    }
    messages.push(Message::new("assistant", chosen));
    Ok(Example {
        id: f.id("id")?.unwrap_or_default(),
        task: Task::Preference.as_str().into(),
        messages,
        rejected: normalize::optional(&rejected),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Example, RecordError> {
        parse(&FileInput { display: "p.jsonl", text: line, stem: "p" }).remove(0).result
    }

    #[test]
    fn string_and_turn_forms_agree() {
        let a = one(r#"{"prompt": "Is it safe to double my metformin dose?", "chosen": "Do not change the dose without your doctor.", "rejected": "Yes, double it."}"#).unwrap();
        let b = one(r#"{"chosen": [{"role": "user", "content": "Is it safe to double my metformin dose?"}, {"role": "assistant", "content": "Do not change the dose without your doctor."}], "rejected": [{"role": "user", "content": "Is it safe to double my metformin dose?"}, {"role": "assistant", "content": "Yes, double it."}]}"#).unwrap();
        assert_eq!(a.messages, b.messages);
        assert_eq!(a.rejected, b.rejected);
        assert_eq!(a.rejected.as_deref(), Some("Yes, double it."));
    }

    #[test]
    fn identical_replies_are_malformed() {
        let err = one(r#"{"prompt": "q", "chosen": "same", "rejected": " same "}"#).unwrap_err();
        assert_eq!(err.reason(), r#"field "rejected": same text as chosen"#);
    }
}
