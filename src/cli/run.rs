//! `medalign run`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use medalign_engine::{Executor, JobCommand, ProgressMode, RunOptions, StageStatus};

use super::{load_plan, print_json, registry, ManifestArgs, EXIT_FAILED};

/// Run a pipeline.
#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// Run this stage and everything it needs, nothing downstream.
    #[arg(long, value_name = "ID", conflicts_with = "only")]
    until: Option<String>,
    /// Run only this stage; its inputs must already be built.
    #[arg(long, value_name = "ID")]
    only: Option<String>,
    /// Run this stage even if cached (repeatable).
    #[arg(long, value_name = "ID")]
    force: Vec<String>,
    /// Show what would run and why; run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Stages run at once (default: the number of cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// No progress display.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Where stages run: local (this process) or slurm (one batch job per stage); default: the
    /// manifest's `executor:`, else local.
    #[arg(long, value_name = "local|slurm")]
    executor: Option<Executor>,
    /// Return once the jobs are submitted (slurm executor); `status` follows them.
    #[arg(long, conflicts_with = "dry_run")]
    detach: bool,
    /// Inside a batch job: run this one stage here, as its job (set by the slurm executor).
    #[arg(long, value_name = "ID", hide = true, conflicts_with_all = ["until", "only", "dry_run", "detach"])]
    job_stage: Option<String>,
}

/// Runs (or dry-runs) the manifest and prints the summary.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let registry = registry();
    let plan = match load_plan(&args.manifest, &registry)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    if let Some(id) = &args.job_stage {
        let report = medalign_engine::run_job(&plan, &registry, id, args.force.contains(id))?;
        let failed = report.status == StageStatus::Failed;
        return Ok(if failed { ExitCode::from(EXIT_FAILED) } else { ExitCode::SUCCESS });
    }
    let opts = RunOptions {
        until: args.until,
        only: args.only,
        force: args.force,
        jobs: args.jobs.unwrap_or_else(medalign_engine::default_jobs),
        progress: if args.quiet { ProgressMode::Silent } else { ProgressMode::detect() },
        executor: args.executor,
        detach: args.detach,
        job_command: Some(job_command(&args.manifest)?),
        log: None,
    };
    let reports = if args.dry_run {
        medalign_engine::dry_run(&plan, &opts)?
    } else {
        medalign_engine::run(&plan, &registry, &opts)?
    };
    if args.json {
        print_json(&reports)?;
    }
    eprint!("{}", medalign_engine::table(&reports));
    if !args.dry_run {
        print_eval_reports(&plan, &reports);
    }
    let failed: Vec<&str> =
        reports.iter().filter(|r| r.status == StageStatus::Failed).map(|r| r.id.as_str()).collect();
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for r in reports.iter().filter(|r| r.status == StageStatus::Failed) {
            eprintln!("error: stage \"{}\" failed: {}", r.id, r.reason);
        }
        Ok(ExitCode::from(EXIT_FAILED))
    }
}

/// How a Slurm job runs one stage: this binary's `run --job-stage <id>` on the same manifest (by
/// absolute path) with the same vars.
fn job_command(manifest: &ManifestArgs) -> anyhow::Result<JobCommand> {
    let exe = std::env::current_exe().context("finding this binary for the job command")?;
    let path = std::fs::canonicalize(&manifest.manifest)
        .with_context(|| format!("resolving {}", manifest.manifest.display()))?;
    let mut base = vec![exe.display().to_string(), "run".into(), path.display().to_string()];
    for v in &manifest.vars {
        base.extend(["--var".to_string(), v.clone()]);
    }
    Ok(JobCommand(Arc::new(move |id: &str, forced: bool| {
        let mut argv = base.clone();
        argv.extend(["--job-stage".to_string(), id.to_string()]);
        if forced {
            argv.extend(["--force".to_string(), id.to_string()]);
        }
        argv
    })))
}

/// Ends a run with each eval stage's comparison table and where its HTML report is.
fn print_eval_reports(plan: &medalign_engine::Plan, reports: &[medalign_engine::StageReport]) {
    let store = medalign_engine::Store::open(&plan.store_dir);
    for r in reports
        .iter()
        .filter(|r| r.kind == "eval" && matches!(r.status, StageStatus::Ran | StageStatus::Cached))
    {
        let (Ok(store), Some(key)) = (&store, &r.key) else { continue };
        if let Ok((table, html)) = super::inspect::eval_report(&store.artifact_dir(key)) {
            eprintln!("\n{} (base vs tuned):\n{table}", r.id);
            if let Some(html) = html {
                eprintln!("HTML report: {}", html.display());
            }
        }
    }
}
