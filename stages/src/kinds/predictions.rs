//! The `predictions` artifact kind, a table: eval's outcome for each model and item (prediction,
//! gold, choice log-likelihoods, reply). Its schema is `schemas/predictions.json`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Builder, ListBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use crate::table::{self, opt_text, text, Layout, TableError};

/// The `predictions` artifact kind: eval's per-model, per-item outcomes.
pub const PREDICTIONS: ArtifactKind = ArtifactKind {
    name: "predictions",
    doc: "eval predictions: model, suite, task, item, gold, prediction, choice log-likelihoods, reply",
    schema_json: Some(include_str!("../../../schemas/predictions.json")),
};

/// One model's outcome on one item.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Prediction {
    /// `base` or `candidate`.
    pub model: String,
    /// `benchmark`, `medication_choice`, `medication_flag`, `refusal` or `false_refusal`.
    pub suite: String,
    /// The task (harness task name, or the source of a safety set).
    pub task: String,
    /// The example id.
    pub id: String,
    /// Where the item came from (`path:line`).
    pub origin: String,
    /// `loglikelihood` or `generative`.
    pub mode: String,
    /// The gold choice or the desired outcome.
    pub gold: Option<String>,
    /// The prediction (argmax of the log-likelihoods, the extracted answer, or the label of a reply).
    pub pred: Option<String>,
    /// The length-normalized prediction (`acc_norm`), likelihood mode only.
    pub pred_norm: Option<String>,
    /// Whether the outcome is the desired one.
    pub correct: bool,
    /// Whether the length-normalized prediction is correct.
    pub correct_norm: Option<bool>,
    /// Log-likelihood of each choice, in choice order (empty in generative mode).
    pub logprobs: Vec<f64>,
    /// The generated reply (generative suites).
    pub reply: Option<String>,
}

fn list_f64() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, false)))
}

/// The Arrow schema of the `predictions` artifact kind.
pub fn predictions_schema() -> SchemaRef {
    let t = |n: &str, null| Field::new(n, DataType::Utf8, null);
    Arc::new(Schema::new(vec![
        t("model", false),
        t("suite", false),
        t("task", false),
        t("id", false),
        t("origin", false),
        t("mode", false),
        t("gold", true),
        t("pred", true),
        t("pred_norm", true),
        Field::new("correct", DataType::Boolean, false),
        Field::new("correct_norm", DataType::Boolean, true),
        Field::new("logprobs", list_f64(), false),
        t("reply", true),
    ]))
}

/// Writes a `predictions` table.
pub fn write_predictions(path: &Path, rows: &[Prediction]) -> Result<(), TableError> {
    table::write_table(path, predictions_schema(), Layout::Plain, rows, |rows| {
        let mut lp = ListBuilder::new(Float64Builder::new())
            .with_field(Arc::new(Field::new_list_field(DataType::Float64, false)));
        for r in rows {
            lp.append_value(r.logprobs.iter().map(|&x| Some(x)));
        }
        let cols: Vec<ArrayRef> = vec![
            text(rows.iter().map(|r| r.model.as_str())),
            text(rows.iter().map(|r| r.suite.as_str())),
            text(rows.iter().map(|r| r.task.as_str())),
            text(rows.iter().map(|r| r.id.as_str())),
            text(rows.iter().map(|r| r.origin.as_str())),
            text(rows.iter().map(|r| r.mode.as_str())),
            opt_text(rows.iter().map(|r| r.gold.as_deref())),
            opt_text(rows.iter().map(|r| r.pred.as_deref())),
            opt_text(rows.iter().map(|r| r.pred_norm.as_deref())),
            table::bools(rows.iter().map(|r| r.correct)),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.correct_norm))),
            Arc::new(lp.finish()),
            opt_text(rows.iter().map(|r| r.reply.as_deref())),
        ];
        cols
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_write_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = Prediction {
            model: "base".into(),
            suite: "benchmark".into(),
            task: "pubmedqa".into(),
            logprobs: vec![-1.5, -0.5],
            correct: true,
            ..Default::default()
        };
        write_predictions(&dir.path().join("p.parquet"), &[p.clone(), p]).unwrap();
        crate::table::check_schema_file("predictions", &predictions_schema());
    }
}
