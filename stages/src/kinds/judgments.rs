//! The `judgments` artifact kind, a table in long form: one row per (response, judge, metric) with
//! the score, the judge's rationale, and for a failed judgment the error and the judge's raw answer.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use crate::table::{self, field, Columns, Layout, TableError};

/// The `judgments` artifact kind.
pub const JUDGMENTS: ArtifactKind = ArtifactKind {
    name: "judgments",
    doc: "judge scores: response, judge, metric, score 1-5, rationale, status, raw answer of failures; agreement.json",
    schema_json: Some(include_str!("../../../schemas/judgments.json")),
};

/// One metric's judgment of one response by one judge.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Judgment {
    /// The candidate's id (`prompt_id#generator`).
    pub candidate_id: String,
    /// The prompt's example id.
    pub prompt_id: String,
    /// The example's task.
    pub task: String,
    /// The candidate's generator.
    pub generator: String,
    /// The judge's name in the params.
    pub judge: String,
    /// The judge's backend identity.
    pub judge_model: String,
    /// The metric.
    pub metric: String,
    /// `high` when 5 is best, `low` when 1 is best.
    pub better: String,
    /// 1 to 5; none when the judgment failed.
    pub score: Option<i64>,
    /// Probability-weighted score (distribution mode).
    pub expected: Option<f64>,
    /// The judge's reason.
    pub rationale: Option<String>,
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The judge's last raw answer, kept for failures.
    pub raw: Option<String>,
    /// Requests it took (1 + answers fed back).
    pub attempts: i64,
}

impl Judgment {
    /// The score to rank by: the expectation when there is one, else the score.
    pub fn value(&self) -> Option<f64> {
        self.expected.or(self.score.map(|s| s as f64))
    }

    /// [`Self::value`] turned so that higher is better.
    pub fn oriented(&self) -> Option<f64> {
        self.value().map(|v| if self.better == "low" { 6.0 - v } else { v })
    }
}

/// The Arrow schema of the `judgments` kind (`schemas/judgments.json`).
pub fn judgments_schema() -> SchemaRef {
    let t = |name: &str, nullable| field(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        t("candidate_id", false),
        t("prompt_id", false),
        t("task", false),
        t("generator", false),
        t("judge", false),
        t("judge_model", false),
        t("metric", false),
        t("better", false),
        field("score", DataType::Int64, true),
        field("expected", DataType::Float64, true),
        t("rationale", true),
        t("status", false),
        t("error", true),
        t("raw", true),
        field("attempts", DataType::Int64, false),
    ]))
}

/// Writes a `judgments` table.
pub fn write_judgments(path: &Path, rows: &[Judgment]) -> Result<(), TableError> {
    use table::{opt_f64, opt_i64, opt_text, text};
    table::write_table(path, judgments_schema(), Layout::Snappy, rows, |c| {
        vec![
            text(c.iter().map(|r| r.candidate_id.as_str())),
            text(c.iter().map(|r| r.prompt_id.as_str())),
            text(c.iter().map(|r| r.task.as_str())),
            text(c.iter().map(|r| r.generator.as_str())),
            text(c.iter().map(|r| r.judge.as_str())),
            text(c.iter().map(|r| r.judge_model.as_str())),
            text(c.iter().map(|r| r.metric.as_str())),
            text(c.iter().map(|r| r.better.as_str())),
            opt_i64(c.iter().map(|r| r.score)),
            opt_f64(c.iter().map(|r| r.expected)),
            opt_text(c.iter().map(|r| r.rationale.as_deref())),
            text(c.iter().map(|r| r.status.as_str())),
            opt_text(c.iter().map(|r| r.error.as_deref())),
            opt_text(c.iter().map(|r| r.raw.as_deref())),
            opt_i64(c.iter().map(|r| Some(r.attempts))),
        ]
    })
}

/// Reads a `judgments` table.
pub fn read_judgments(path: &Path) -> Result<Vec<Judgment>, TableError> {
    table::read_table(path, batch_judgments)
}

fn batch_judgments(c: &Columns<'_>) -> Result<Vec<Judgment>, String> {
    let (cid, pid, task, generator) =
        (c.text("candidate_id")?, c.text("prompt_id")?, c.text("task")?, c.text("generator")?);
    let (judge, model, metric, score) =
        (c.text("judge")?, c.text("judge_model")?, c.text("metric")?, c.i64("score")?);
    let (expected, rationale, status, error) =
        (c.f64("expected")?, c.text("rationale")?, c.text("status")?, c.text("error")?);
    let (raw, attempts, better) = (c.text("raw")?, c.i64("attempts")?, c.text("better")?);
    Ok((0..c.len())
        .map(|i| Judgment {
            candidate_id: cid(i).unwrap_or_default(),
            prompt_id: pid(i).unwrap_or_default(),
            task: task(i).unwrap_or_default(),
            generator: generator(i).unwrap_or_default(),
            judge: judge(i).unwrap_or_default(),
            judge_model: model(i).unwrap_or_default(),
            metric: metric(i).unwrap_or_default(),
            better: better(i).unwrap_or_default(),
            score: score(i),
            expected: expected(i),
            rationale: rationale(i),
            status: status(i).unwrap_or_default(),
            error: error(i),
            raw: raw(i),
            attempts: attempts(i).unwrap_or(0),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judgments_round_trip_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.parquet");
        let rows = vec![
            Judgment {
                candidate_id: "a#x".into(),
                judge: "j".into(),
                metric: "empathy".into(),
                better: "high".into(),
                score: Some(4),
                status: "ok".into(),
                attempts: 1,
                ..Default::default()
            },
            Judgment {
                candidate_id: "a#y".into(),
                status: "failed".into(),
                error: Some("no JSON".into()),
                raw: Some("hm".into()),
                attempts: 3,
                ..Default::default()
            },
        ];
        write_judgments(&path, &rows).unwrap();
        assert_eq!(read_judgments(&path).unwrap(), rows);
        crate::table::check_schema_file("judgments", &judgments_schema());
    }
}
