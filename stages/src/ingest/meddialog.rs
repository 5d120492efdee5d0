//! MedDialog (English) text dumps: blocks of `id=N`, the source URL, `Description`, a summary,
//! `Dialogue`, then `Patient:` and `Doctor:` turns, each label on its own line or followed by text.
//!
//! Patient turns become `user` messages and doctor turns `assistant` ones; the description is the
//! context. The original block is kept verbatim (as a JSON string).

use crate::ingest::normalize;
use crate::ingest::record::{FileInput, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// Parses a MedDialog text file.
pub fn parse(input: &FileInput<'_>) -> Vec<Parsed> {
    blocks(input.text)
        .into_iter()
        .map(|(line, block)| Parsed {
            line,
            raw: serde_json::Value::String(block.join("\n")).to_string(),
            result: record(&block),
        })
        .collect()
}

/// Splits the text at each `id=` line into blocks, each with its 1-based starting line.
fn blocks(text: &str) -> Vec<(usize, Vec<&str>)> {
    let mut out: Vec<(usize, Vec<&str>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("id=") || out.is_empty() && !line.trim().is_empty() {
            out.push((i + 1, Vec::new()));
        }
        if let Some((_, block)) = out.last_mut() {
            block.push(line);
        }
    }
    for (_, block) in &mut out {
        while block.last().is_some_and(|l| l.trim().is_empty()) {
            block.pop();
        }
    }
    out
}

/// Which part of a block a line belongs to.
enum Part {
    Head,
    Description,
    Dialogue,
}

fn record(block: &[&str]) -> Result<Example, RecordError> {
    let id = block
        .first()
        .and_then(|l| l.trim().strip_prefix("id="))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| RecordError::field("id", "expected the block to start with id=N"))?;
    let mut part = Part::Head;
    let mut description = Vec::new();
    let mut turns: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in &block[1..] {
        let t = line.trim();
        match (&part, t) {
            (_, "Description") => part = Part::Description,
            (_, "Dialogue") => part = Part::Dialogue,
            (Part::Head, _) => {}
            (Part::Description, _) => description.push(*line),
            (Part::Dialogue, _) => {
                if let Some(rest) = t.strip_prefix("Patient:") {
                    turns.push(("user", vec![rest]));
                } else if let Some(rest) = t.strip_prefix("Doctor:") {
                    turns.push(("assistant", vec![rest]));
                } else if let Some((_, text)) = turns.last_mut() {
                    text.push(line);
                } else if !t.is_empty() {
                    return Err(RecordError::field(
                        "Dialogue",
                        "expected a Patient: or Doctor: turn first",
                    ));
                }
            }
        }
    }
    if !matches!(part, Part::Dialogue) {
        return Err(RecordError::field("Dialogue", "missing"));
    }
    let mut messages: Vec<Message> = Vec::new();
    for (role, text) in turns {
        let content = normalize::text(&text.join("\n"));
        if content.is_empty() {
            continue; // an empty turn carries nothing; the block is kept verbatim in `original`
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push_str("\n\n");
                last.content.push_str(&content);
            }
            _ => messages.push(Message::new(role, content)),
        }
    }
    match messages.first() {
        None => return Err(RecordError::field("Dialogue", "no turns")),
        Some(m) if m.role != "user" => {
            return Err(RecordError::field("Dialogue", "expected the patient to speak first"))
        }
        _ => {}
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(RecordError::field("Dialogue", "no Doctor turn"));
    }
    Ok(Example {
        id,
        task: Task::Dialogue.as_str().into(),
        messages,
        context: normalize::optional(&description.join("\n")),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "id=0\nhttps://www.icliniq.com/qa/x\nDescription\nQ. Is my cough due to asthma?\nDialogue\nPatient:\nHi doctor,\nI cough every night.\nDoctor:\nHi. Do you wheeze?\nPatient: Yes, sometimes.\nDoctor: Please see a doctor for spirometry.\n\nid=1\nhttps://x\nDescription\nQ. Rash?\nDialogue\nPatient:\nI have a rash.\n";

    #[test]
    fn turns_become_messages() {
        let rows = parse(&FileInput { display: "d.txt", text: TEXT, stem: "d" });
        assert_eq!(rows.len(), 2);
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.id, "0");
        assert_eq!(e.context.as_deref(), Some("Q. Is my cough due to asthma?"));
        let roles: Vec<_> = e.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
        assert_eq!(e.messages[0].content, "Hi doctor,\nI cough every night.");
        assert_eq!(rows[1].line, 14);
        assert_eq!(
            rows[1].result.as_ref().unwrap_err().reason(),
            r#"field "Dialogue": no Doctor turn"#
        );
    }
}
