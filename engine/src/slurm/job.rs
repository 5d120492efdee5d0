//! Inside a batch job: one stage run alone in this process, as `run --only` would, its key checked
//! again first (inputs that came out byte-identical make it a cache hit); its output linked beside
//! the artifact as `logs/<stage>-<key>.log`, and its report left for the submit host.

use crate::error::Result;
use crate::exec::RunOptions;
use crate::executor::Executor;
use crate::kind::KindRegistry;
use crate::plan::Plan;
use crate::progress::ProgressMode;
use crate::report::{BatchJob, StageReport, StageStatus};
use crate::store::Store;

use super::record;

/// Runs stage `id` of the plan (rebuilding it if `forced`) as the batch job `SLURM_JOB_ID`, prints
/// its line of the summary (and its error) to the job's log, and records its report for the run
/// that submitted it.
pub fn run_job(
    plan: &Plan,
    registry: &KindRegistry,
    id: &str,
    forced: bool,
) -> Result<StageReport> {
    let i = plan.require(id)?;
    let store = Store::open(&plan.store_dir)?;
    let job = std::env::var("SLURM_JOB_ID").ok().filter(|j| !j.is_empty());
    let opts = RunOptions {
        only: Some(id.to_string()),
        force: if forced { vec![id.to_string()] } else { Vec::new() },
        jobs: 1,
        progress: ProgressMode::Lines,
        executor: Some(Executor::Local),
        log: job.as_ref().map(|j| record::job_log(&store, j)),
        ..RunOptions::default()
    };
    let mut report = crate::exec::run_local(plan, registry, &opts)?.swap_remove(i);
    // The job's log ends with the outcome.
    eprint!("{}", crate::report::table(std::slice::from_ref(&report)));
    if report.status == StageStatus::Failed {
        eprintln!("error: stage \"{id}\" failed: {}", report.reason);
    }
    if let Some(job) = job {
        let log = match &report.key {
            Some(key) if crate::logs::path(&store, id, key).exists() => {
                crate::logs::path(&store, id, key)
            }
            _ => record::job_log(&store, &job),
        };
        let failed = report.status == StageStatus::Failed;
        report.job = Some(BatchJob {
            id: job.clone(),
            state: if failed { "FAILED" } else { "COMPLETED" }.into(),
            node: Some(crate::record::host()),
            exit: Some(if failed { "1" } else { "0" }.into()),
            log: Some(log.display().to_string()),
        });
        if failed {
            report.reason = format!("{} (job {job}, exit 1; log {})", report.reason, log.display());
        }
        record::write_result(&store, &job, &report)?;
    }
    Ok(report)
}
