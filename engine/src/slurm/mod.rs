//! The slurm executor: the plan is resolved on the submit host, each stage that must run becomes
//! one batch job (`sbatch`) that runs that stage alone in the same manifest and store, after the
//! jobs of its inputs (`--dependency=afterok`). The run then follows the jobs to the usual
//! summary, or returns once they are submitted (`--detach`).

mod follow;
mod interrupt;
mod job;
pub(crate) mod queue;
mod record;
mod sbatch;
mod status;
mod submit;

pub use job::run_job;
pub(crate) use status::annotate;

use crate::error::{EngineError, Result};
use crate::exec::RunOptions;
use crate::plan::Plan;
use crate::progress::RunProgress;
use crate::report::{BatchJob, StageReport, StageStatus};
use crate::resolve::Resolver;

/// Runs the plan as Slurm jobs; one report per stage, in plan order.
pub(crate) fn run(plan: &Plan, opts: &RunOptions) -> Result<Vec<StageReport>> {
    for id in &opts.force {
        plan.require(id)?;
    }
    let command = opts.job_command.as_ref().ok_or_else(|| {
        EngineError::Usage("the slurm executor needs a job command to run a stage".into())
    })?;
    queue::require_client()?;
    let resolver = Resolver::new(plan)?;
    let mut holds = Vec::new();
    let launch = submit::launch(&resolver, opts, command, &mut holds)?;
    resolver.stat.save()?;
    let progress = RunProgress::new(opts.progress);
    for (i, job) in &launch.jobs {
        progress.println(&format!("[{}] submitted as job {}", plan.stages[*i].id, job.id));
    }
    if !opts.detach {
        return Ok(follow::follow(plan, &resolver.store, launch, &progress));
    }
    let mut reports = launch.reports;
    for (i, job) in launch.jobs {
        let ps = &plan.stages[i];
        let mut r = StageReport::new(&ps.id, ps.kind, StageStatus::Submitted, job.reason, job.key);
        let log = record::job_log(&resolver.store, &job.id).display().to_string();
        r.job = Some(BatchJob {
            id: job.id,
            state: "PENDING".into(),
            log: Some(log),
            ..Default::default()
        });
        reports[i] = Some(r);
    }
    Ok(reports.into_iter().map(|r| r.expect("every stage reported")).collect())
}
