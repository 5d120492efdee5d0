//! What the slurm executor keeps in the store about its jobs:
//!
//! ```text
//! <store>/jobs/submitted/<pipeline>/<stage>.json   the latest job submitted for a stage (status, why)
//! <store>/jobs/results/<job>.json                  the stage's report, written by the job as it ends
//! <store>/logs/job-<job>.log                       the job's output, linked as logs/<stage>-<key>.log
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::report::StageReport;
use crate::store::{write_atomic, Store};

/// The latest job submitted for a stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Submission {
    /// Job id.
    pub job: String,
    /// The stage's key, when known at submission (its inputs were built).
    pub key: Option<String>,
    /// When (RFC 3339).
    pub submitted: String,
}

fn submission_path(store: &Store, pipeline: &str, stage: &str) -> PathBuf {
    store.root().join("jobs/submitted").join(pipeline).join(format!("{stage}.json"))
}

fn result_path(store: &Store, job: &str) -> PathBuf {
    store.root().join("jobs/results").join(format!("{job}.json"))
}

/// The log Slurm writes for job `job`.
pub(crate) fn job_log(store: &Store, job: &str) -> PathBuf {
    store.root().join("logs").join(format!("job-{job}.log"))
}

/// `job_log` as an sbatch `--output` pattern.
pub(crate) fn job_log_pattern(store: &Store) -> PathBuf {
    job_log(store, "%j")
}

/// Records the job submitted for `stage`.
pub(crate) fn write_submission(
    store: &Store,
    pipeline: &str,
    stage: &str,
    s: &Submission,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(s).expect("submission serializes");
    write_atomic(&submission_path(store, pipeline, stage), &bytes)
}

/// The latest job submitted for `stage`, if any.
pub(crate) fn read_submission(store: &Store, pipeline: &str, stage: &str) -> Option<Submission> {
    let bytes = std::fs::read(submission_path(store, pipeline, stage)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records what job `job` reported.
pub(crate) fn write_result(store: &Store, job: &str, report: &StageReport) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(report).expect("report serializes");
    write_atomic(&result_path(store, job), &bytes)
}

/// What job `job` reported, once it has.
pub(crate) fn read_result(store: &Store, job: &str) -> Option<StageReport> {
    let bytes = std::fs::read(result_path(store, job)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
