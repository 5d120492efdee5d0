//! What `run` and `status` say about each stage: the summary table for people and JSON for programs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A stage's outcome in a run, or its state in `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageStatus {
    /// Its artifact was already in the store.
    Cached,
    /// It ran and published its artifact.
    Ran,
    /// It ran and failed.
    Failed,
    /// It did not run (not selected, or an input failed).
    Skipped,
    /// `--dry-run`: it would run.
    WouldRun,
    /// `status`: its artifact is in the store.
    Fresh,
    /// `status`: it would run.
    Stale,
    /// `run --detach`: its batch job is submitted.
    Submitted,
}

impl StageStatus {
    /// The word the summary shows.
    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Cached => "cached",
            StageStatus::Ran => "ran",
            StageStatus::Failed => "failed",
            StageStatus::Skipped => "skipped",
            StageStatus::WouldRun => "would-run",
            StageStatus::Fresh => "fresh",
            StageStatus::Stale => "stale",
            StageStatus::Submitted => "submitted",
        }
    }
}

/// The batch job that ran (or runs) a stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchJob {
    /// Job id.
    pub id: String,
    /// Its scheduler state: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT...
    pub state: String,
    /// The node it runs or ran on.
    pub node: Option<String>,
    /// A finished job's exit code (`1`, or `0:15` for a signal).
    pub exit: Option<String>,
    /// Its log.
    pub log: Option<String>,
}

/// One line of the summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageReport {
    /// Stage id.
    pub id: String,
    /// Stage kind.
    pub kind: String,
    /// What happened.
    pub status: StageStatus,
    /// Why.
    pub reason: String,
    /// The artifact key, when known.
    pub key: Option<String>,
    /// Seconds it ran (for a cached stage, how long it took when it ran).
    pub seconds: f64,
    /// The figures the stage reported when it ran.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The warnings the stage reported when it ran.
    pub warnings: Vec<String>,
    /// Its batch job (slurm executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<BatchJob>,
}

impl StageReport {
    /// A report that has not run: no time, no metrics or warnings yet.
    pub fn new(
        id: &str,
        kind: &str,
        status: StageStatus,
        reason: String,
        key: Option<String>,
    ) -> Self {
        let (id, kind) = (id.to_string(), kind.to_string());
        StageReport {
            id,
            kind,
            status,
            reason,
            key,
            seconds: 0.0,
            metrics: BTreeMap::new(),
            warnings: Vec::new(),
            job: None,
        }
    }
    /// Takes the time, the metrics and the warnings the artifact recorded when it ran.
    pub fn recorded(mut self, record: &crate::record::ArtifactRecord) -> Self {
        self.seconds = record.seconds;
        self.metrics = record.metrics.clone();
        self.warnings = record.warnings.clone();
        self
    }
}

/// At most three of a reason's `; `-separated changes; `medalign why` shows them all.
fn short_reason(reason: &str) -> String {
    let parts: Vec<&str> = reason.split("; ").collect();
    if parts.len() <= 3 {
        return reason.to_string();
    }
    format!("{}; and {} more (medalign why lists them)", parts[..3].join("; "), parts.len() - 3)
}

/// The summary table: stage, kind, status, duration, key, reason; then each stage's warnings, one a line.
pub fn table(reports: &[StageReport]) -> String {
    let rows: Vec<[String; 6]> = reports
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.kind.clone(),
                r.status.as_str().to_string(),
                if r.status == StageStatus::Ran || r.status == StageStatus::Failed {
                    format!("{:.1}s", r.seconds)
                } else {
                    "-".into()
                },
                r.key
                    .as_deref()
                    .map(|k| k[..k.len().min(12)].to_string())
                    .unwrap_or_else(|| "-".into()),
                short_reason(&r.reason),
            ]
        })
        .collect();
    let header = ["STAGE", "KIND", "STATUS", "TIME", "KEY", "REASON"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter().zip(row.iter()) {
            out.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(&row[5]);
        out.push('\n');
    }
    for r in reports {
        for w in &r.warnings {
            out.push_str(&format!("warning: stage \"{}\": {w}\n", r.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let r = |id: &str, status| StageReport {
            id: id.into(),
            kind: "k".into(),
            status,
            reason: "never run".into(),
            key: Some("0123456789abcdef".into()),
            seconds: 1.31,
            metrics: BTreeMap::new(),
            warnings: Vec::new(),
            job: None,
        };
        let t = table(&[r("ingest", StageStatus::Ran), r("sft", StageStatus::Cached)]);
        assert_eq!(
            t,
            "STAGE   KIND  STATUS  TIME  KEY           REASON\n\
             ingest  k     ran     1.3s  0123456789ab  never run\n\
             sft     k     cached  -     0123456789ab  never run\n"
        );
    }

    #[test]
    fn warnings_follow_the_table() {
        let mut r =
            StageReport::new("ingest", "ingest", StageStatus::Ran, "never run".into(), None);
        r.warnings = vec!["empty.jsonl: no records".into()];
        let t = table(&[r]);
        assert!(t.ends_with("ran     0.0s  -    never run\nwarning: stage \"ingest\": empty.jsonl: no records\n"), "{t}");
    }
}
