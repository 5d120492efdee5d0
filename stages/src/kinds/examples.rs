//! The `examples` artifact kind: the normalized training or evaluation example, one row each.
//!
//! Every ingest format produces [`Example`]s; dedupe and later stages read them back from Parquet
//! with [`read_examples`]. The content hash covers what the model sees (task, messages, context,
//! choices, answer, rejected reply), not the provenance columns.

use std::path::Path;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use medalign_engine::ArtifactKind;
use serde::{Deserialize, Serialize};

use crate::table::{self, list_field, messages_field, Columns, Layout, TableError};

/// The `examples` artifact kind: normalized chat examples, one row each.
pub const EXAMPLES: ArtifactKind = ArtifactKind {
    name: "examples",
    doc: "normalized examples: id, source, task, chat messages, context, choices, answer, provenance, hash",
    schema_json: Some(include_str!("../../../schemas/examples.json")),
};

/// What an example trains or measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Multiple-choice question; `choices` holds the options and `answer` the letter.
    Mcq,
    /// PubMedQA-style question over an abstract; `answer` is yes, no or maybe.
    YesNoMaybe,
    /// A multi-turn patient/doctor conversation.
    Dialogue,
    /// A single instruction and its response.
    Instruction,
    /// A prompt with a preferred (last assistant message) and a `rejected` reply.
    Preference,
    /// A harmful request with the safe response a model should give.
    Safety,
}

impl Task {
    /// The name stored in the `task` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Mcq => "mcq",
            Task::YesNoMaybe => "yes_no_maybe",
            Task::Dialogue => "dialogue",
            Task::Instruction => "instruction",
            Task::Preference => "preference",
            Task::Safety => "safety",
        }
    }

    /// Parses a `task` column value.
    pub fn parse(s: &str) -> Option<Task> {
        Some(match s {
            "mcq" => Task::Mcq,
            "yes_no_maybe" => Task::YesNoMaybe,
            "dialogue" => Task::Dialogue,
            "instruction" => Task::Instruction,
            "preference" => Task::Preference,
            "safety" => Task::Safety,
            _ => return None,
        })
    }
}

/// One chat turn: the model crate's, so prompts go to the chat template as they are.
pub use medalign_model::Message;

/// One normalized row of the `examples` artifact kind.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Example {
    /// Stable id: `source:original-id`, or `source:file:row` where the format has no id.
    pub id: String,
    /// The source name from the ingest params (by default the format name).
    pub source: String,
    /// The task, as [`Task::as_str`].
    pub task: String,
    /// The conversation: the prompt turns, then the reference answer turn(s) where the format has one.
    pub messages: Vec<Message>,
    /// Supporting text the prompt refers to (an abstract, a case description, an Alpaca input).
    pub context: Option<String>,
    /// Answer options, in label order A, B, C, ... (empty when the task has none).
    pub choices: Vec<String>,
    /// The gold answer: an option letter for `mcq`, yes/no/maybe for `yes_no_maybe`.
    pub answer: Option<String>,
    /// The source's explanation or long answer.
    pub explanation: Option<String>,
    /// The dispreferred reply of a preference pair.
    pub rejected: Option<String>,
    /// Subject or topic from the source (MMLU file subject, MedMCQA subject, MedQA step).
    pub subject: Option<String>,
    /// The source's split name when it has one (train, dev, val, test).
    pub split: Option<String>,
    /// Where the record came from: `path:line`, path as written in the params.
    pub origin: String,
    /// The original record, as JSON.
    pub original: String,
    /// BLAKE3 of the normalized content, hex.
    pub hash: String,
}

impl Example {
    /// Computes [`Example::hash`] from the content fields, in a fixed order with length prefixes.
    pub fn content_hash(&self) -> String {
        // The same bytes as feeding a `blake3::Hasher` field by field, gathered first: one hash call
        // over a buffer is several times faster than thirty small updates.
        let mut buf = Vec::with_capacity(256 + self.original.len() / 2);
        let mut put = |s: &str| {
            buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        };
        put("medalign-example-v1");
        put(&self.task);
        for m in &self.messages {
            put(&m.role);
            put(&m.content);
        }
        put("|");
        put(self.context.as_deref().unwrap_or("\u{0}"));
        for c in &self.choices {
            put(c);
        }
        put("|");
        put(self.answer.as_deref().unwrap_or("\u{0}"));
        put(self.rejected.as_deref().unwrap_or("\u{0}"));
        blake3::hash(&buf).to_hex().to_string()
    }

    /// Sets the content hash; call once the content fields are final.
    pub fn with_hash(mut self) -> Self {
        self.hash = self.content_hash();
        self
    }

    /// The text dedupe compares: every message, the context and the choices, newline-separated.
    pub fn content_text(&self) -> String {
        let mut out = String::new();
        self.write_content_text(&mut out);
        out
    }

    /// Appends [`Example::content_text`] to `out`, to reuse one buffer over many rows.
    pub fn write_content_text(&self, out: &mut String) {
        for m in &self.messages {
            out.push_str(&m.content);
            out.push('\n');
        }
        if let Some(c) = &self.context {
            out.push_str(c);
            out.push('\n');
        }
        for c in &self.choices {
            out.push_str(c);
            out.push('\n');
        }
    }

    /// What a model is shown when the example is an eval item: every turn but the assistant's (the
    /// reference answers are never shown), the context and the choices. Decontamination looks for
    /// this text in the training rows.
    pub fn prompt_text(&self) -> String {
        let mut out = String::new();
        for m in self.messages.iter().filter(|m| m.role != "assistant") {
            out.push_str(&m.content);
            out.push('\n');
        }
        for c in self.context.iter().chain(&self.choices) {
            out.push_str(c);
            out.push('\n');
        }
        out
    }

    /// The last assistant message, which is the reference answer of instruction-like tasks.
    pub fn reference_reply(&self) -> Option<&str> {
        self.messages.iter().rev().find(|m| m.role == "assistant").map(|m| m.content.as_str())
    }
}

/// The prompt turns of `e` and its reference answer.
///
/// The prompt is every message before the last assistant turn (all messages when there is none);
/// `context` is put before the first user turn's text and `choices` after it, as `A. ...` lines.
pub fn prompt_of(e: &Example) -> (Vec<Message>, Option<String>) {
    let last_assistant = e.messages.iter().rposition(|m| m.role == "assistant");
    let mut turns: Vec<Message> = match last_assistant {
        Some(i) => e.messages[..i].to_vec(),
        None => e.messages.clone(),
    };
    if let Some(first) = turns.iter_mut().find(|m| m.role == "user") {
        if let Some(ctx) = e.context.as_deref().filter(|c| !c.trim().is_empty()) {
            first.content = format!("{ctx}\n\n{}", first.content);
        }
        if !e.choices.is_empty() {
            let options: Vec<String> = e
                .choices
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}. {c}", (b'A' + i as u8) as char))
                .collect();
            first.content = format!("{}\n\n{}", first.content, options.join("\n"));
        }
    }
    let reference = last_assistant.map(|i| e.messages[i].content.clone());
    (turns, reference)
}

/// The example columns, shared by `examples` and `removed`.
pub(crate) fn example_fields() -> Vec<Field> {
    let text = |name: &str, nullable| Field::new(name, DataType::Utf8, nullable);
    vec![
        text("id", false),
        text("source", false),
        text("task", false),
        messages_field("messages"),
        text("context", true),
        list_field("choices", DataType::Utf8),
        text("answer", true),
        text("explanation", true),
        text("rejected", true),
        text("subject", true),
        text("split", true),
        text("origin", false),
        text("original", false),
        text("hash", false),
    ]
}

/// The Arrow schema of the `examples` artifact kind (`schemas/examples.json`).
pub fn examples_schema() -> SchemaRef {
    Arc::new(Schema::new(example_fields()))
}

/// The columns of [`example_fields`] for `rows`.
pub(crate) fn example_columns(rows: &[&Example]) -> Vec<ArrayRef> {
    use table::{opt_text, text};
    vec![
        text(rows.iter().map(|e| e.id.as_str())),
        text(rows.iter().map(|e| e.source.as_str())),
        text(rows.iter().map(|e| e.task.as_str())),
        table::messages(rows.iter().map(|e| e.messages.as_slice())),
        opt_text(rows.iter().map(|e| e.context.as_deref())),
        table::string_lists(rows.iter().map(|e| e.choices.as_slice())),
        opt_text(rows.iter().map(|e| e.answer.as_deref())),
        opt_text(rows.iter().map(|e| e.explanation.as_deref())),
        opt_text(rows.iter().map(|e| e.rejected.as_deref())),
        opt_text(rows.iter().map(|e| e.subject.as_deref())),
        opt_text(rows.iter().map(|e| e.split.as_deref())),
        text(rows.iter().map(|e| e.origin.as_str())),
        text(rows.iter().map(|e| e.original.as_str())),
        text(rows.iter().map(|e| e.hash.as_str())),
    ]
}

/// Writes an `examples` table.
pub fn write_examples(path: &Path, rows: &[Example]) -> Result<(), TableError> {
    table::write_table(path, examples_schema(), Layout::Grouped, rows, |chunk| {
        example_columns(&chunk.iter().collect::<Vec<_>>())
    })
}

/// Reads an `examples` table (or any table with its columns, such as `removed`).
pub fn read_examples(path: &Path) -> Result<Vec<Example>, TableError> {
    table::read_table(path, |c| {
        batch_examples(c).map_err(|e| format!("not an examples table: {e}"))
    })
}

fn batch_examples(c: &Columns<'_>) -> Result<Vec<Example>, String> {
    let (id, source, task, origin, original, hash) = (
        c.text("id")?,
        c.text("source")?,
        c.text("task")?,
        c.text("origin")?,
        c.text("original")?,
        c.text("hash")?,
    );
    let (context, answer, explanation, rejected, subject, split) = (
        c.text("context")?,
        c.text("answer")?,
        c.text("explanation")?,
        c.text("rejected")?,
        c.text("subject")?,
        c.text("split")?,
    );
    let (messages, choices) = (c.messages("messages")?, c.strings("choices")?);
    Ok((0..c.len())
        .map(|i| Example {
            id: id(i).unwrap_or_default(),
            source: source(i).unwrap_or_default(),
            task: task(i).unwrap_or_default(),
            messages: messages(i),
            context: context(i),
            choices: choices(i),
            answer: answer(i),
            explanation: explanation(i),
            rejected: rejected(i),
            subject: subject(i),
            split: split(i),
            origin: origin(i).unwrap_or_default(),
            original: original(i).unwrap_or_default(),
            hash: hash(i).unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_provenance_and_sees_content() {
        let a = Example {
            id: "a:1".into(),
            task: "mcq".into(),
            messages: vec![Message::new("user", "Which vitamin prevents scurvy?")],
            choices: vec!["A".into(), "C".into()],
            answer: Some("B".into()),
            origin: "x.jsonl:1".into(),
            ..Default::default()
        }
        .with_hash();
        let mut b = a.clone();
        b.id = "b:7".into();
        b.origin = "y.jsonl:9".into();
        assert_eq!(a.content_hash(), b.content_hash());
        b.answer = Some("A".into());
        assert_ne!(a.hash, b.content_hash());
    }

    #[test]
    fn task_names_round_trip() {
        for t in [
            Task::Mcq,
            Task::YesNoMaybe,
            Task::Dialogue,
            Task::Instruction,
            Task::Preference,
            Task::Safety,
        ] {
            assert_eq!(Task::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn prompt_stops_before_the_reference_and_carries_context_and_options() {
        let e = Example {
            messages: vec![
                Message::new("user", "Which drug?"),
                Message::new("assistant", "Protamine."),
            ],
            context: Some("A patient on heparin bleeds.".into()),
            choices: vec!["Protamine".into(), "Vitamin K".into()],
            ..Default::default()
        };
        let (turns, reference) = prompt_of(&e);
        assert_eq!(
            turns,
            vec![Message::new(
                "user",
                "A patient on heparin bleeds.\n\nWhich drug?\n\nA. Protamine\nB. Vitamin K"
            )]
        );
        assert_eq!(reference.as_deref(), Some("Protamine."));
        let bare = Example { messages: vec![Message::new("user", "Hi")], ..Default::default() };
        assert_eq!(prompt_of(&bare), (vec![Message::new("user", "Hi")], None));
    }

    #[test]
    fn examples_round_trip_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let rows = vec![
            Example {
                id: "medqa:0".into(),
                source: "medqa".into(),
                task: "mcq".into(),
                messages: vec![Message::new("user", "Which drug reverses heparin?")],
                choices: vec!["Protamine sulfate".into(), "Vitamin K".into()],
                answer: Some("A".into()),
                origin: "medqa.jsonl:1".into(),
                original: "{}".into(),
                ..Default::default()
            }
            .with_hash(),
            Example {
                id: "chat:1".into(),
                source: "chat".into(),
                task: "instruction".into(),
                messages: vec![Message::new("user", "Hi"), Message::new("assistant", "Hello.")],
                context: Some("ctx".into()),
                origin: "c.jsonl:2".into(),
                original: "{}".into(),
                ..Default::default()
            }
            .with_hash(),
        ];
        write_examples(&path, &rows).unwrap();
        assert_eq!(read_examples(&path).unwrap(), rows);
        let file = std::fs::File::open(&path).unwrap();
        let builder =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert_eq!(builder.schema().as_ref(), examples_schema().as_ref());
        crate::table::check_schema_file("examples", &examples_schema());
    }
}
