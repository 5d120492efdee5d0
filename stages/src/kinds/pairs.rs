//! The `pairs` artifact kind, a table: one DPO pair per prompt, the chosen and rejected responses
//! with their scores, the judges that scored them, the tier (`gold` or `silver`) and the candidate
//! ids they came from.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use super::examples::Message;
use crate::table::{self, field, list_field, messages_field, Columns, Layout, TableError};

/// The `pairs` artifact kind.
pub const PAIRS: ArtifactKind = ArtifactKind {
    name: "pairs",
    doc: "DPO pairs: prompt turns, chosen, rejected, scores, judges, tier (gold/silver), kind, source candidate ids",
    schema_json: Some(include_str!("../../../schemas/pairs.json")),
};

/// One preference pair.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pair {
    /// The prompt's example id.
    pub prompt_id: String,
    /// The example's source name.
    pub source: String,
    /// The example's task.
    pub task: String,
    /// The prompt turns.
    pub messages: Vec<Message>,
    /// The preferred response.
    pub chosen: String,
    /// The dispreferred response.
    pub rejected: String,
    /// Generator of the chosen response.
    pub chosen_generator: String,
    /// Generator of the rejected response.
    pub rejected_generator: String,
    /// Candidate id of the chosen response.
    pub chosen_id: String,
    /// Candidate id of the rejected response.
    pub rejected_id: String,
    /// Mean oriented score of the chosen response over metrics and judges (higher is better).
    pub chosen_score: f64,
    /// The same for the rejected response.
    pub rejected_score: f64,
    /// `chosen_score - rejected_score`.
    pub margin: f64,
    /// The judges that scored both responses.
    pub judges: Vec<String>,
    /// Whether every one of them scored the chosen response higher.
    pub judges_agree: bool,
    /// By judge: `gold` or `silver`. By rules: `rule` (the rejected answer breaks a refusal rule)
    /// or `reference` (the reference against the model's answer the judges like least).
    pub tier: String,
    /// `preference`, or `safety` for a harmful request (chosen = the safe response).
    pub kind: String,
    /// Whether a person verified it (the `verified` file).
    pub verified: bool,
}

/// The Arrow schema of the `pairs` kind (`schemas/pairs.json`).
pub fn pairs_schema() -> SchemaRef {
    let t = |name: &str| field(name, DataType::Utf8, false);
    let f = |name: &str| field(name, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        t("prompt_id"),
        t("source"),
        t("task"),
        messages_field("messages"),
        t("chosen"),
        t("rejected"),
        t("chosen_generator"),
        t("rejected_generator"),
        t("chosen_id"),
        t("rejected_id"),
        f("chosen_score"),
        f("rejected_score"),
        f("margin"),
        list_field("judges", DataType::Utf8),
        field("judges_agree", DataType::Boolean, false),
        t("tier"),
        t("kind"),
        field("verified", DataType::Boolean, false),
    ]))
}

/// Writes a `pairs` table.
pub fn write_pairs(path: &Path, rows: &[Pair]) -> Result<(), TableError> {
    use table::{bools, f64s, text};
    table::write_table(path, pairs_schema(), Layout::Snappy, rows, |c| {
        vec![
            text(c.iter().map(|r| r.prompt_id.as_str())),
            text(c.iter().map(|r| r.source.as_str())),
            text(c.iter().map(|r| r.task.as_str())),
            table::messages(c.iter().map(|r| r.messages.as_slice())),
            text(c.iter().map(|r| r.chosen.as_str())),
            text(c.iter().map(|r| r.rejected.as_str())),
            text(c.iter().map(|r| r.chosen_generator.as_str())),
            text(c.iter().map(|r| r.rejected_generator.as_str())),
            text(c.iter().map(|r| r.chosen_id.as_str())),
            text(c.iter().map(|r| r.rejected_id.as_str())),
            f64s(c.iter().map(|r| r.chosen_score)),
            f64s(c.iter().map(|r| r.rejected_score)),
            f64s(c.iter().map(|r| r.margin)),
            table::string_lists(c.iter().map(|r| r.judges.as_slice())),
            bools(c.iter().map(|r| r.judges_agree)),
            text(c.iter().map(|r| r.tier.as_str())),
            text(c.iter().map(|r| r.kind.as_str())),
            bools(c.iter().map(|r| r.verified)),
        ]
    })
}

/// Reads a `pairs` table.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, TableError> {
    table::read_table(path, batch_pairs)
}

fn batch_pairs(c: &Columns<'_>) -> Result<Vec<Pair>, String> {
    let s = |name: &str| c.text(name);
    let (pid, source, task, messages) =
        (s("prompt_id")?, s("source")?, s("task")?, c.messages("messages")?);
    let (chosen, rejected, cg, rg, cid, rid) = (
        s("chosen")?,
        s("rejected")?,
        s("chosen_generator")?,
        s("rejected_generator")?,
        s("chosen_id")?,
        s("rejected_id")?,
    );
    let (cs, rs, margin, judges) =
        (c.f64("chosen_score")?, c.f64("rejected_score")?, c.f64("margin")?, c.strings("judges")?);
    let (agree, tier, kind, verified) =
        (c.bool("judges_agree")?, s("tier")?, s("kind")?, c.bool("verified")?);
    Ok((0..c.len())
        .map(|i| Pair {
            prompt_id: pid(i).unwrap_or_default(),
            source: source(i).unwrap_or_default(),
            task: task(i).unwrap_or_default(),
            messages: messages(i),
            chosen: chosen(i).unwrap_or_default(),
            rejected: rejected(i).unwrap_or_default(),
            chosen_generator: cg(i).unwrap_or_default(),
            rejected_generator: rg(i).unwrap_or_default(),
            chosen_id: cid(i).unwrap_or_default(),
            rejected_id: rid(i).unwrap_or_default(),
            chosen_score: cs(i).unwrap_or_default(),
            rejected_score: rs(i).unwrap_or_default(),
            margin: margin(i).unwrap_or_default(),
            judges: judges(i),
            judges_agree: agree(i),
            tier: tier(i).unwrap_or_default(),
            kind: kind(i).unwrap_or_default(),
            verified: verified(i),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let rows = vec![Pair {
            prompt_id: "s:1".into(),
            messages: vec![Message::new("user", "q")],
            chosen: "good".into(),
            rejected: "bad".into(),
            margin: 2.0,
            judges: vec!["a".into(), "b".into()],
            judges_agree: true,
            tier: "gold".into(),
            kind: "safety".into(),
            ..Default::default()
        }];
        write_pairs(&path, &rows).unwrap();
        assert_eq!(read_pairs(&path).unwrap(), rows);
        crate::table::check_schema_file("pairs", &pairs_schema());
    }
}
