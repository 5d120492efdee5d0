//! The normalized training or evaluation example: one row of the `examples` artifact kind.
//!
//! Every ingest format produces [`Example`]s; dedupe and later stages read them back from Parquet
//! with [`crate::table::read_examples`]. The content hash covers what the model sees (task, messages,
//! context, choices, answer, rejected reply), not the provenance columns.

use serde::{Deserialize, Serialize};

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
}

/// At most `limit(group)` items of each group (items without a limit are all kept), evenly spaced
/// over that group's items in input order (item `floor(i * len / n)` for `i` in `0..n`), so a
/// sample covers every source and category the group's rows were sorted by. Order is kept.
pub fn spread_by<T>(
    items: Vec<T>,
    group: impl Fn(&T) -> &str,
    limit: impl Fn(&str) -> Option<usize>,
) -> Vec<T> {
    use std::collections::HashMap;
    let mut totals: HashMap<String, usize> = HashMap::new();
    items.iter().for_each(|x| *totals.entry(group(x).to_string()).or_default() += 1);
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    let keep: Vec<bool> = items
        .iter()
        .map(|x| {
            let g = group(x);
            let Some(n) = limit(g) else { return true };
            let len = totals[g];
            let (index, taken) = seen.entry(g.to_string()).or_default();
            let keep = *taken < n && *index == (*taken * len) / n.min(len).max(1);
            *taken += usize::from(keep);
            *index += 1;
            keep
        })
        .collect();
    items.into_iter().zip(keep).filter_map(|(x, k)| k.then_some(x)).collect()
}

#[cfg(test)]
mod spread_tests {
    use super::spread_by;

    #[test]
    fn evenly_spaced_per_group_in_order() {
        let items: Vec<(&str, usize)> =
            (0..10).map(|i| ("a", i)).chain((0..3).map(|i| ("b", i))).collect();
        let got = spread_by(items.clone(), |x| x.0, |g| (g == "a").then_some(4));
        let a: Vec<usize> = got.iter().filter(|x| x.0 == "a").map(|x| x.1).collect();
        assert_eq!(a, [0, 2, 5, 7]);
        assert_eq!(got.iter().filter(|x| x.0 == "b").count(), 3);
        assert_eq!(spread_by(items.clone(), |x| x.0, |_| Some(20)).len(), 13);
        assert!(spread_by(items, |x| x.0, |_| Some(0)).is_empty());
    }
}
