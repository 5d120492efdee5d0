//! PubMedQA (pubmedqa/pubmedqa) `ori_pqal.json`: one JSON object, PMID -> `{QUESTION, CONTEXTS[],
//! LABELS[], MESHES[], YEAR, final_decision: yes|no|maybe, LONG_ANSWER, ...}`.
//!
//! The contexts are joined with newlines, as lm-evaluation-harness does; the PMID is the id.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::ingest::normalize;
use crate::ingest::record::{
    type_name, Fields, FileError, FileInput, LineIndex, Parsed, RecordError,
};
use crate::kinds::examples::{Example, Message, Task};

/// The answers PubMedQA allows, in choice order.
pub const DECISIONS: [&str; 3] = ["yes", "no", "maybe"];

/// Parses a PubMedQA file.
pub fn parse(input: &FileInput<'_>) -> Result<Vec<Parsed>, FileError> {
    let entries = entries(input.text)
        .map_err(|e| input.error(e.line().max(1), format!("invalid JSON: {e}")))?;
    let lines = LineIndex::new(input.text);
    Ok(entries
        .into_iter()
        .map(|(pmid, raw)| {
            let original = format!("{{{}:{}}}", Value::String(pmid.clone()), raw.get());
            let result = serde_json::from_str::<Value>(raw.get())
                .map_err(|e| RecordError::record(format!("invalid JSON: {e}")))
                .and_then(|v| record(&pmid, &Fields::of(&v)?));
            Parsed { line: lines.line_of(input.text, raw.get()), raw: original, result }
        })
        .collect())
}

/// The top-level object's entries, in file order, each value borrowed from the text.
pub fn entries(text: &str) -> Result<Vec<(String, &RawValue)>, serde_json::Error> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, &'de RawValue)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object of PMID -> record")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let out = (&mut de).deserialize_map(Entries)?;
    de.end()?;
    Ok(out)
}

fn record(pmid: &str, f: &Fields<'_>) -> Result<Example, RecordError> {
    let question = f.text("QUESTION")?;
    let contexts = match f.get("CONTEXTS") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| {
                c.as_str()
                    .map(normalize::text)
                    .ok_or_else(|| RecordError::field("CONTEXTS", "expected strings"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => {
            return Err(RecordError::field(
                "CONTEXTS",
                format!("expected an array, got {}", type_name(other)),
            ))
        }
        None => return Err(RecordError::field("CONTEXTS", "missing")),
    };
    let decision = f.text("final_decision")?;
    if !DECISIONS.contains(&decision.as_str()) {
        return Err(RecordError::field(
            "final_decision",
            format!("expected yes, no or maybe, got {decision:?}"),
        ));
    }
    Ok(Example {
        id: pmid.to_string(),
        task: Task::YesNoMaybe.as_str().into(),
        messages: vec![Message::new("user", question)],
        context: normalize::optional(&contexts.join("\n")),
        choices: DECISIONS.iter().map(|d| d.to_string()).collect(),
        answer: Some(decision),
        explanation: f.opt_text("LONG_ANSWER")?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{
 "101": {
  "QUESTION": "Does aspirin reduce  preeclampsia risk?",
  "CONTEXTS": ["Background one.", "Results two."],
  "final_decision": "yes",
  "LONG_ANSWER": "Low-dose aspirin lowered risk."
 },
 "102": {
  "QUESTION": "Is X useful?",
  "CONTEXTS": [],
  "final_decision": "perhaps"
 }
}"#;

    #[test]
    fn entries_keep_order_and_lines() {
        let rows = parse(&FileInput { display: "p.json", text: TEXT, stem: "p" }).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].line, rows[1].line), (2, 8));
        let e = rows[0].result.as_ref().unwrap();
        assert_eq!(e.id, "101");
        assert_eq!(e.messages[0].content, "Does aspirin reduce preeclampsia risk?");
        assert_eq!(e.context.as_deref(), Some("Background one.\nResults two."));
        assert!(rows[0].raw.starts_with(r#"{"101":{"#));
        assert_eq!(
            rows[1].result.as_ref().unwrap_err().reason(),
            r#"field "final_decision": expected yes, no or maybe, got "perhaps""#
        );
    }

    #[test]
    fn broken_file_names_the_line() {
        let err = parse(&FileInput { display: "p.json", text: "{\n \"1\": {,\n}", stem: "p" })
            .unwrap_err();
        assert!(err.to_string().starts_with("p.json:2: invalid JSON"), "{err}");
    }
}
