//! The `adapter` artifact kind: a PEFT LoRA adapter directory made by train, its resolved training
//! config beside it, and the training metrics table in its run record.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use medalign_engine::ArtifactKind;
use serde::{Deserialize, Serialize};

use crate::table::{self, field, Layout, TableError};

/// The `adapter` artifact kind: a PEFT LoRA adapter directory (`adapter_config.json`,
/// `adapter_model.safetensors`), made by train.
pub const ADAPTER: ArtifactKind = ArtifactKind {
    name: "adapter",
    doc: "a PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors), optionally merged/ or *.gguf",
    schema_json: None,
};

/// The resolved config written next to the adapter.
pub const TRAINING_CONFIG_FILE: &str = "training_config.json";
/// The metrics table, in the adapter's run record.
pub const METRICS_FILE: &str = "metrics.parquet";
/// The ids of the examples an SFT adapter trained on, one a line (sorted): what `generate`'s
/// `unseen` leaves out.
pub const TRAINED_EXAMPLES_FILE: &str = "trained_examples.txt";

/// The PEFT folder inside an `adapter` artifact: the artifact directory or its `adapter/`.
pub fn adapter_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("adapter");
    if dir.join("adapter_config.json").is_file() || !nested.is_dir() {
        dir.to_path_buf()
    } else {
        nested
    }
}

/// One scalar at one optimizer step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// Optimizer step (1-based; 0 for figures before training).
    pub step: u64,
    /// Name, e.g. `train/loss`, `train/lr`, `eval/loss`.
    pub tag: String,
    /// Value.
    pub value: f64,
    /// Seconds since the Unix epoch when recorded.
    pub wall_time: f64,
}

/// The schema of [`METRICS_FILE`].
pub fn metrics_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field("step", DataType::Int64, true),
        field("tag", DataType::Utf8, false),
        field("value", DataType::Float64, false),
        field("wall_time", DataType::Float64, false),
    ]))
}

/// Writes training metrics to a Parquet file.
pub fn write_metrics(path: &Path, rows: &[MetricRow]) -> Result<(), TableError> {
    table::write_table(path, metrics_schema(), Layout::Snappy, rows, |c| {
        vec![
            table::opt_i64(c.iter().map(|r| Some(r.step as i64))),
            table::text(c.iter().map(|r| r.tag.as_str())),
            table::f64s(c.iter().map(|r| r.value)),
            table::f64s(c.iter().map(|r| r.wall_time)),
        ]
    })
}

/// Reads a `metrics.parquet` written by [`write_metrics`].
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>, TableError> {
    table::read_table(path, |c| {
        let (step, tag, value, wall_time) =
            (c.i64("step")?, c.text("tag")?, c.f64("value")?, c.f64("wall_time")?);
        Ok((0..c.len())
            .map(|i| MetricRow {
                step: step(i).unwrap_or(0).max(0) as u64,
                tag: tag(i).unwrap_or_default(),
                value: value(i).unwrap_or(f64::NAN),
                wall_time: wall_time(i).unwrap_or(0.0),
            })
            .collect())
    })
}
