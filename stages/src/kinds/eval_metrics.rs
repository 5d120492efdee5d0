//! The `eval_metrics` artifact kind, a table: one row per model, task and metric (with its 95%
//! interval), plus `delta` rows comparing candidate with base. Its schema is
//! `schemas/eval_metrics.json`.

use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use medalign_engine::ArtifactKind;

use crate::table::{self, opt_f64, opt_i64, opt_text, text, Layout, TableError};

/// The `eval_metrics` artifact kind: eval's metrics with 95% intervals and base-vs-candidate deltas.
pub const EVAL_METRICS: ArtifactKind = ArtifactKind {
    name: "eval_metrics",
    doc: "eval metrics per model, suite, task and metric: value, n, 95% interval, delta rows with p-value",
    schema_json: Some(include_str!("../../../schemas/eval_metrics.json")),
};

/// One metric of one model on one task, or a `delta` row (candidate minus base).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MetricRow {
    /// `base`, `candidate` or `delta`.
    pub model: String,
    /// The suite, as in [`super::predictions::Prediction::suite`].
    pub suite: String,
    /// The task, or a group (`mmlu_medical`).
    pub task: String,
    /// `acc`, `acc_norm`, `refusal_rate`, `false_refusal_rate`, `safe_choice`, `unsafe_choice`, `precision`, `recall`.
    pub metric: String,
    /// Items measured.
    pub n: i64,
    /// The value (a proportion, or a difference of proportions for `delta`).
    pub value: f64,
    /// Lower end of the 95% interval (Wilson; paired bootstrap for `delta`).
    pub ci_low: Option<f64>,
    /// Upper end of the 95% interval.
    pub ci_high: Option<f64>,
    /// McNemar's exact p-value (`delta` rows).
    pub p_value: Option<f64>,
    /// What labelled the outcomes (`rule set ...`, or `likelihood`).
    pub classifier: Option<String>,
}

/// The Arrow schema of the `eval_metrics` artifact kind.
pub fn eval_metrics_schema() -> SchemaRef {
    let t = |n: &str, null| Field::new(n, DataType::Utf8, null);
    let f = |n: &str, null| Field::new(n, DataType::Float64, null);
    Arc::new(Schema::new(vec![
        t("model", false),
        t("suite", false),
        t("task", false),
        t("metric", false),
        Field::new("n", DataType::Int64, false),
        f("value", false),
        f("ci_low", true),
        f("ci_high", true),
        f("p_value", true),
        t("classifier", true),
    ]))
}

/// Writes an `eval_metrics` table.
pub fn write_eval_metrics(path: &Path, rows: &[MetricRow]) -> Result<(), TableError> {
    table::write_table(path, eval_metrics_schema(), Layout::Plain, rows, |rows| {
        vec![
            text(rows.iter().map(|r| r.model.as_str())),
            text(rows.iter().map(|r| r.suite.as_str())),
            text(rows.iter().map(|r| r.task.as_str())),
            text(rows.iter().map(|r| r.metric.as_str())),
            opt_i64(rows.iter().map(|r| Some(r.n))),
            opt_f64(rows.iter().map(|r| Some(r.value))),
            opt_f64(rows.iter().map(|r| r.ci_low)),
            opt_f64(rows.iter().map(|r| r.ci_high)),
            opt_f64(rows.iter().map(|r| r.p_value)),
            opt_text(rows.iter().map(|r| r.classifier.as_deref())),
        ]
    })
}

/// Reads an `eval_metrics` table.
pub fn read_eval_metrics(path: &Path) -> Result<Vec<MetricRow>, TableError> {
    table::read_table(path, |c| {
        let (model, suite, task, metric, classifier) = (
            c.text("model")?,
            c.text("suite")?,
            c.text("task")?,
            c.text("metric")?,
            c.text("classifier")?,
        );
        let n = c.i64("n")?;
        let (value, lo, hi, p) =
            (c.f64("value")?, c.f64("ci_low")?, c.f64("ci_high")?, c.f64("p_value")?);
        Ok((0..c.len())
            .map(|i| MetricRow {
                model: model(i).unwrap_or_default(),
                suite: suite(i).unwrap_or_default(),
                task: task(i).unwrap_or_default(),
                metric: metric(i).unwrap_or_default(),
                n: n(i).unwrap_or_default(),
                value: value(i).unwrap_or_default(),
                ci_low: lo(i),
                ci_high: hi(i),
                p_value: p(i),
                classifier: classifier(i),
            })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_metrics_round_trip_and_match_the_schema_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = MetricRow {
            model: "delta".into(),
            suite: "refusal".into(),
            task: "msb".into(),
            metric: "refusal_rate".into(),
            n: 4,
            value: 0.25,
            ci_low: Some(-0.1),
            ci_high: Some(0.5),
            p_value: Some(0.6),
            classifier: None,
        };
        write_eval_metrics(&dir.path().join("m.parquet"), std::slice::from_ref(&m)).unwrap();
        assert_eq!(read_eval_metrics(&dir.path().join("m.parquet")).unwrap(), vec![m]);
        crate::table::check_schema_file("eval_metrics", &eval_metrics_schema());
    }
}
