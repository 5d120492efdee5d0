//! The `predictions` and `eval_metrics` tables: one row per model and item, and one row per model,
//! task and metric (with its 95% interval), plus `delta` rows comparing candidate with base.
//! Their schemas are `schemas/predictions.json` and `schemas/eval_metrics.json`.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Float64Builder, Int64Array, ListBuilder,
    RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

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

/// One metric of one model on one task, or a `delta` row (candidate minus base).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MetricRow {
    /// `base`, `candidate` or `delta`.
    pub model: String,
    /// The suite, as in [`Prediction::suite`].
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

/// The Arrow schema of the `eval_metrics` artifact kind.
pub fn metrics_schema() -> SchemaRef {
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

fn text<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(it))
}
fn opt_text<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}
fn floats(it: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from_iter(it))
}

fn write_batch(path: &Path, batch: RecordBatch) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::create(path).map_err(|e| err(&e))?;
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).map_err(|e| err(&e))?;
    w.write(&batch).map_err(|e| err(&e))?;
    w.close().map_err(|e| err(&e))?;
    Ok(())
}

/// Writes a `predictions` table.
pub fn write_predictions(path: &Path, rows: &[Prediction]) -> Result<(), String> {
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
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.correct)))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.correct_norm))),
        Arc::new(lp.finish()),
        opt_text(rows.iter().map(|r| r.reply.as_deref())),
    ];
    let batch = RecordBatch::try_new(predictions_schema(), cols)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    write_batch(path, batch)
}

/// Writes an `eval_metrics` table.
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<(), String> {
    let cols: Vec<ArrayRef> = vec![
        text(rows.iter().map(|r| r.model.as_str())),
        text(rows.iter().map(|r| r.suite.as_str())),
        text(rows.iter().map(|r| r.task.as_str())),
        text(rows.iter().map(|r| r.metric.as_str())),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.n))),
        floats(rows.iter().map(|r| Some(r.value))),
        floats(rows.iter().map(|r| r.ci_low)),
        floats(rows.iter().map(|r| r.ci_high)),
        floats(rows.iter().map(|r| r.p_value)),
        opt_text(rows.iter().map(|r| r.classifier.as_deref())),
    ];
    let batch = RecordBatch::try_new(metrics_schema(), cols)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    write_batch(path, batch)
}

/// Reads an `eval_metrics` table.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>, String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let file = File::open(path).map_err(|e| err(&e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let b = batch.map_err(|e| err(&e))?;
        let col = |n: &str| {
            b.column_by_name(n).ok_or_else(|| {
                format!("{}: not an eval_metrics table: no column {n:?}", path.display())
            })
        };
        let s = |n: &str| -> Result<StringArray, String> { Ok(col(n)?.as_string::<i32>().clone()) };
        let f = |n: &str| -> Result<Float64Array, String> {
            Ok(col(n)?.as_primitive::<Float64Type>().clone())
        };
        let (model, suite, task, metric, classifier) =
            (s("model")?, s("suite")?, s("task")?, s("metric")?, s("classifier")?);
        let n = col("n")?.as_primitive::<Int64Type>().clone();
        let (value, lo, hi, p) = (f("value")?, f("ci_low")?, f("ci_high")?, f("p_value")?);
        let opt = |a: &Float64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
        for i in 0..b.num_rows() {
            out.push(MetricRow {
                model: model.value(i).into(),
                suite: suite.value(i).into(),
                task: task.value(i).into(),
                metric: metric.value(i).into(),
                n: n.value(i),
                value: value.value(i),
                ci_low: opt(&lo, i),
                ci_high: opt(&hi, i),
                p_value: opt(&p, i),
                classifier: (!classifier.is_null(i)).then(|| classifier.value(i).to_string()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set `MEDALIGN_UPDATE_SCHEMAS=1` to rewrite the two schema files from the code.
    #[test]
    fn schema_files_match_the_code() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        for (name, schema) in
            [("predictions", predictions_schema()), ("eval_metrics", metrics_schema())]
        {
            let json = serde_json::to_string_pretty(schema.as_ref()).unwrap() + "\n";
            let path = dir.join(format!("{name}.json"));
            if std::env::var_os("MEDALIGN_UPDATE_SCHEMAS").is_some() {
                std::fs::write(&path, &json).unwrap();
            }
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                json,
                "{} is stale: run with MEDALIGN_UPDATE_SCHEMAS=1",
                path.display()
            );
        }
    }

    #[test]
    fn tables_round_trip() {
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
        write_metrics(&dir.path().join("m.parquet"), std::slice::from_ref(&m)).unwrap();
        assert_eq!(read_metrics(&dir.path().join("m.parquet")).unwrap(), vec![m]);
    }
}
