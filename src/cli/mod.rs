//! The command line: one `*Args` struct per subcommand, dispatched here.

mod bench;
mod bench_eval;
mod bench_generate;
mod gc;
mod generate;
mod inspect;
mod model;
mod models;
mod run;
mod score;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use medalign_engine::{EngineError, KindRegistry, Plan};

/// A stage failed or a manifest is invalid.
pub const EXIT_FAILED: u8 = 1;
/// Anything else went wrong (bad arguments, unreadable files).
pub const EXIT_ERROR: u8 = 2;

/// The manifest used when none is given.
pub const DEFAULT_MANIFEST: &str = "pipelines/medalign.yaml";

/// MedAlign: declare a medical fine-tuning pipeline in YAML, run it with content-hashed caching,
/// and trace every artifact back to its inputs.
#[derive(Parser, Debug)]
#[command(name = "medalign", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a pipeline: stages in dependency order, cached ones skipped.
    Run(run::RunArgs),
    /// Show which stages are fresh and which would run, and why.
    Status(inspect::StatusArgs),
    /// Explain one stage's state.
    Why(inspect::WhyArgs),
    /// Show where an artifact came from.
    Lineage(inspect::LineageArgs),
    /// Draw the pipeline's stages and edges.
    Dag(inspect::DagArgs),
    /// Check a manifest without running anything.
    Validate(inspect::ValidateArgs),
    /// List the stage kinds and their params.
    Stages(stages::StagesArgs),
    /// Free artifacts no manifest and no registered model needs.
    Gc(gc::GcArgs),
    /// Chat with a model: the prompt is chat-formatted and the answer streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Log-likelihood of a continuation given a context.
    Score(score::ScoreArgs),
    /// Print an eval stage's comparison table.
    Report(inspect::ReportArgs),
    /// The model registry: list, show, promote, upload.
    Models(models::ModelsArgs),
    /// Serve a model behind an OpenAI-compatible API (and Vertex AI's custom-container contract).
    Serve(medalign_server::ServeArgs),
    /// Measure speed.
    Bench(bench::BenchArgs),
}

/// Runs the command.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(a) => run::run(a),
        Command::Status(a) => inspect::status(a),
        Command::Why(a) => inspect::why(a),
        Command::Lineage(a) => inspect::lineage(a),
        Command::Dag(a) => inspect::dag(a),
        Command::Validate(a) => inspect::validate(a),
        Command::Stages(a) => stages::stages(a),
        Command::Gc(a) => gc::gc(a),
        Command::Generate(a) => {
            generate::run_generate(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Score(a) => {
            score::run_score(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(a) => inspect::report(a),
        Command::Models(a) => {
            models::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => {
            medalign_server::run(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(a) => bench::bench(a),
    }
}

/// Every stage kind this binary knows.
pub fn registry() -> KindRegistry {
    let mut r = KindRegistry::new();
    medalign_stages::register(&mut r);
    r
}

/// Options shared by commands that read a manifest.
#[derive(clap::Args, Debug, Clone)]
pub struct ManifestArgs {
    /// The pipeline manifest.
    #[arg(default_value = DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Override a manifest var: `--var name=value` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
}

/// Loads and compiles a manifest; invalid manifests print every problem.
pub fn load_plan(
    args: &ManifestArgs,
    registry: &KindRegistry,
) -> anyhow::Result<Result<Plan, ExitCode>> {
    let mut vars = BTreeMap::new();
    for v in &args.vars {
        let Some((k, val)) = v.split_once('=') else { bail!("--var {v}: expected NAME=VALUE") };
        vars.insert(k.to_string(), val.to_string());
    }
    if !args.manifest.exists() {
        bail!("manifest {} not found (give a path, or run from the project root for {DEFAULT_MANIFEST})", args.manifest.display());
    }
    match medalign_engine::load(&args.manifest, registry, &vars) {
        Ok(plan) => Ok(Ok(plan)),
        Err(EngineError::Manifest(diags)) => {
            eprintln!("{diags}");
            eprintln!("error: {} has {} problem(s)", args.manifest.display(), diags.0.len());
            Ok(Err(ExitCode::from(EXIT_FAILED)))
        }
        Err(e) => Err(e).with_context(|| format!("loading {}", args.manifest.display())),
    }
}

/// Prints JSON to stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
