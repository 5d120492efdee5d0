//! Alpaca JSON (tatsu-lab/alpaca and medical derivatives such as medalpaca): one JSON array of
//! `{"instruction", "input", "output"}`. The `input`, when not empty, becomes the context.

use serde_json::value::RawValue;
use serde_json::Value;

use crate::ingest::record::{Fields, FileError, FileInput, LineIndex, Parsed, RecordError};
use crate::kinds::examples::{Example, Message, Task};

/// Parses an Alpaca JSON file.
pub fn parse(input: &FileInput<'_>) -> Result<Vec<Parsed>, FileError> {
    let items: Vec<&RawValue> = serde_json::from_str(input.text)
        .map_err(|e| input.error(e.line().max(1), format!("invalid JSON: {e}")))?;
    let lines = LineIndex::new(input.text);
    Ok(items
        .into_iter()
        .map(|raw| Parsed {
            line: lines.line_of(input.text, raw.get()),
            raw: raw.get().to_string(),
            result: serde_json::from_str::<Value>(raw.get())
                .map_err(|e| RecordError::record(format!("invalid JSON: {e}")))
                .and_then(|v| record(&Fields::of(&v)?)),
        })
        .collect())
}

fn record(f: &Fields<'_>) -> Result<Example, RecordError> {
    Ok(Example {
        id: f.id("id")?.unwrap_or_default(),
        task: Task::Instruction.as_str().into(),
        messages: vec![
            Message::new("user", f.text("instruction")?),
            Message::new("assistant", f.text("output")?),
        ],
        context: f.opt_text("input")?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_context() {
        let text = "[\n {\"instruction\": \"Summarize the dosing.\", \"input\": \"Amoxicillin 500 mg every 8 hours.\", \"output\": \"500 mg three times a day.\"},\n {\"instruction\": \"x\", \"input\": \"\", \"output\": \"\"}\n]";
        let rows = parse(&FileInput { display: "a.json", text, stem: "a" }).unwrap();
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.context.as_deref(), Some("Amoxicillin 500 mg every 8 hours."));
        assert_eq!(e.messages[1].content, "500 mg three times a day.");
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].result.as_ref().unwrap_err().reason(), r#"field "output": empty"#);
    }
}
