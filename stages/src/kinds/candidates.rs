//! The `candidates` artifact kind, a table: one row per (prompt, generator) with the prompt turns,
//! the sampling params, the response and its token counts; a request that got no answer keeps its
//! error instead.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use medalign_engine::{ArtifactKind, InputArtifact};

use super::examples::{prompt_of, read_examples, Message};
use crate::table::{self, field, messages_field, Columns, Layout, TableError};

/// The `candidates` artifact kind.
pub const CANDIDATES: ArtifactKind = ArtifactKind {
    name: "candidates",
    doc: "candidate responses: prompt id, prompt turns, generator, sampling params, response, token counts",
    schema_json: Some(include_str!("../../../schemas/candidates.json")),
};

/// One candidate response.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Candidate {
    /// `prompt_id#generator`.
    pub id: String,
    /// The example id the prompt came from.
    pub prompt_id: String,
    /// The example's source name.
    pub source: String,
    /// The example's task (`safety` marks a harmful request).
    pub task: String,
    /// The prompt turns, without the reference answer.
    pub messages: Vec<Message>,
    /// The dataset's reference answer, when it has one (judges compare against it).
    pub reference: Option<String>,
    /// The generator's name in the params.
    pub generator: String,
    /// The backend identity (`local:smollm2-135m-instruct`, `openai:<url>:<model>`), or `dataset`.
    pub model: String,
    /// Sampling temperature (none for dataset answers).
    pub temperature: Option<f64>,
    /// Nucleus mass, when set.
    pub top_p: Option<f64>,
    /// Token budget.
    pub max_tokens: Option<i64>,
    /// Sampling seed.
    pub seed: Option<u64>,
    /// Whether the reference answer was shown to the model.
    pub with_reference: bool,
    /// The response; none when the request failed.
    pub response: Option<String>,
    /// Why there is no response.
    pub error: Option<String>,
    /// Prompt tokens as the backend counted them.
    pub prompt_tokens: Option<i64>,
    /// Generated tokens.
    pub completion_tokens: Option<i64>,
    /// Why generation ended (`eos`, `stop`, `length`).
    pub finish_reason: Option<String>,
}

/// The Arrow schema of the `candidates` kind (`schemas/candidates.json`).
pub fn candidates_schema() -> SchemaRef {
    let t = |name: &str, nullable| field(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        t("id", false),
        t("prompt_id", false),
        t("source", false),
        t("task", false),
        messages_field("messages"),
        t("reference", true),
        t("generator", false),
        t("model", false),
        field("temperature", DataType::Float64, true),
        field("top_p", DataType::Float64, true),
        field("max_tokens", DataType::Int64, true),
        field("seed", DataType::UInt64, true),
        field("with_reference", DataType::Boolean, false),
        t("response", true),
        t("error", true),
        field("prompt_tokens", DataType::Int64, true),
        field("completion_tokens", DataType::Int64, true),
        t("finish_reason", true),
    ]))
}

/// Writes a `candidates` table.
pub fn write_candidates(path: &Path, rows: &[Candidate]) -> Result<(), TableError> {
    use table::{bools, opt_f64, opt_i64, opt_text, opt_u64, text};
    table::write_table(path, candidates_schema(), Layout::Snappy, rows, |c| {
        vec![
            text(c.iter().map(|r| r.id.as_str())),
            text(c.iter().map(|r| r.prompt_id.as_str())),
            text(c.iter().map(|r| r.source.as_str())),
            text(c.iter().map(|r| r.task.as_str())),
            table::messages(c.iter().map(|r| r.messages.as_slice())),
            opt_text(c.iter().map(|r| r.reference.as_deref())),
            text(c.iter().map(|r| r.generator.as_str())),
            text(c.iter().map(|r| r.model.as_str())),
            opt_f64(c.iter().map(|r| r.temperature)),
            opt_f64(c.iter().map(|r| r.top_p)),
            opt_i64(c.iter().map(|r| r.max_tokens)),
            opt_u64(c.iter().map(|r| r.seed)),
            bools(c.iter().map(|r| r.with_reference)),
            opt_text(c.iter().map(|r| r.response.as_deref())),
            opt_text(c.iter().map(|r| r.error.as_deref())),
            opt_i64(c.iter().map(|r| r.prompt_tokens)),
            opt_i64(c.iter().map(|r| r.completion_tokens)),
            opt_text(c.iter().map(|r| r.finish_reason.as_deref())),
        ]
    })
}

/// Reads a `candidates` table.
pub fn read_candidates(path: &Path) -> Result<Vec<Candidate>, TableError> {
    table::read_table(path, batch_candidates)
}

fn batch_candidates(c: &Columns<'_>) -> Result<Vec<Candidate>, String> {
    let (id, prompt_id, source, task) =
        (c.text("id")?, c.text("prompt_id")?, c.text("source")?, c.text("task")?);
    let (messages, reference, generator, model) =
        (c.messages("messages")?, c.text("reference")?, c.text("generator")?, c.text("model")?);
    let (temperature, top_p, max_tokens, seed) =
        (c.f64("temperature")?, c.f64("top_p")?, c.i64("max_tokens")?, c.u64("seed")?);
    let (with_reference, response, error) =
        (c.bool("with_reference")?, c.text("response")?, c.text("error")?);
    let (prompt_tokens, completion_tokens, finish) =
        (c.i64("prompt_tokens")?, c.i64("completion_tokens")?, c.text("finish_reason")?);
    Ok((0..c.len())
        .map(|i| Candidate {
            id: id(i).unwrap_or_default(),
            prompt_id: prompt_id(i).unwrap_or_default(),
            source: source(i).unwrap_or_default(),
            task: task(i).unwrap_or_default(),
            messages: messages(i),
            reference: reference(i),
            generator: generator(i).unwrap_or_default(),
            model: model(i).unwrap_or_default(),
            temperature: temperature(i),
            top_p: top_p(i),
            max_tokens: max_tokens(i),
            seed: seed(i),
            with_reference: with_reference(i),
            response: response(i),
            error: error(i),
            prompt_tokens: prompt_tokens(i),
            completion_tokens: completion_tokens(i),
            finish_reason: finish(i),
        })
        .collect())
}

/// Every response a `responses` input holds: candidates with an answer, or examples' reference
/// answers (as candidates of the `reference` generator).
pub fn read_responses<'a>(
    inputs: impl IntoIterator<Item = &'a InputArtifact>,
) -> Result<Vec<Candidate>, TableError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.kind == CANDIDATES.name {
            out.extend(
                read_candidates(&input.table())?.into_iter().filter(|c| c.response.is_some()),
            );
            continue;
        }
        for e in read_examples(&input.table())? {
            let (messages, reference) = prompt_of(&e);
            if let Some(r) = reference {
                out.push(Candidate {
                    id: format!("{}#reference", e.id),
                    prompt_id: e.id,
                    source: e.source,
                    task: e.task,
                    messages,
                    reference: Some(r.clone()),
                    generator: "reference".into(),
                    model: "dataset".into(),
                    response: Some(r),
                    ..Default::default()
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_round_trip_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let rows = vec![
            Candidate {
                id: "s:1#high".into(),
                prompt_id: "s:1".into(),
                task: "safety".into(),
                messages: vec![Message::new(
                    "user",
                    "How do I get opioids without a prescription?",
                )],
                reference: Some("I can't help with that.".into()),
                generator: "high".into(),
                model: "local:m".into(),
                temperature: Some(0.2),
                max_tokens: Some(64),
                seed: Some(u64::MAX),
                with_reference: true,
                response: Some("Please see a doctor.".into()),
                completion_tokens: Some(5),
                ..Default::default()
            },
            Candidate {
                id: "s:1#low".into(),
                error: Some("HTTP 500".into()),
                ..Default::default()
            },
        ];
        write_candidates(&path, &rows).unwrap();
        assert_eq!(read_candidates(&path).unwrap(), rows);
        crate::table::check_schema_file("candidates", &candidates_schema());
    }
}
