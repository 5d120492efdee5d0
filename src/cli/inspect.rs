//! `medalign status`, `why`, `lineage`, `dag` and `validate`: questions answered without running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, ValueEnum};
use medalign_engine::{Plan, StageStatus, Store};

use super::{load_plan, print_json, registry, ManifestArgs, DEFAULT_MANIFEST};

/// Show fresh and stale stages.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Options naming a manifest by flag, for commands whose positional argument is something else.
#[derive(Args, Debug)]
pub struct ManifestFlag {
    /// The pipeline manifest.
    #[arg(long, short = 'm', default_value = DEFAULT_MANIFEST)]
    manifest: PathBuf,
    /// Override a manifest var: `--var name=value` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
}

impl ManifestFlag {
    fn args(&self) -> ManifestArgs {
        ManifestArgs { manifest: self.manifest.clone(), vars: self.vars.clone() }
    }
}

/// Explain one stage.
#[derive(Args, Debug)]
pub struct WhyArgs {
    /// Stage id.
    id: String,
    #[command(flatten)]
    manifest: ManifestFlag,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Output formats of graphs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// Indented text.
    Text,
    /// Graphviz dot.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Show an artifact's lineage.
#[derive(Args, Debug)]
pub struct LineageArgs {
    /// A stage id of the manifest (its latest artifact) or an artifact key (a unique prefix will do).
    target: String,
    #[command(flatten)]
    manifest: ManifestFlag,
    /// Print the tree as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: GraphFormat,
}

/// Print an eval report.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// An eval stage id of the manifest (its latest artifact) or an artifact key (a unique prefix will do).
    target: String,
    #[command(flatten)]
    manifest: ManifestFlag,
}

/// Draw the pipeline.
#[derive(Args, Debug)]
pub struct DagArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: GraphFormat,
}

/// Check a manifest.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
}

macro_rules! plan_or_exit {
    ($args:expr) => {
        match load_plan($args, &registry())? {
            Ok(p) => p,
            Err(code) => return Ok(code),
        }
    };
}

/// `medalign status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_or_exit!(&args.manifest);
    let reports = medalign_engine::status(&plan)?;
    if args.json {
        print_json(&reports)?;
    } else {
        print!("{}", medalign_engine::table(&reports));
    }
    Ok(ExitCode::SUCCESS)
}

/// `medalign why`.
pub fn why(args: WhyArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_or_exit!(&args.manifest.args());
    let i = plan.require(&args.id)?;
    let report = medalign_engine::status(&plan)?.swap_remove(i);
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let state = if report.status == StageStatus::Fresh { "fresh" } else { "stale" };
    println!("{} ({}): {state}", report.id, report.kind);
    for part in report.reason.split("; ") {
        println!("  {part}");
    }
    if let Some(key) = &report.key {
        println!("  key {key}");
    }
    if let Some(job) = &report.job {
        let at = job.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
        println!("  job {} {}{at}", job.id, job.state);
        if let Some(log) = &job.log {
            println!("  log {log}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `medalign lineage`.
pub fn lineage(args: LineageArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_or_exit!(&args.manifest.args());
    let store = Store::open(&plan.store_dir)?;
    let key = target_key(&plan, &store, &args.target)?;
    let tree = medalign_engine::lineage(&store, &key)?;
    if args.json {
        print_json(&tree)?;
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        GraphFormat::Text => print!("{}", medalign_engine::render_text(&tree)),
        GraphFormat::Dot => print!("{}", medalign_engine::render_dot(&tree)),
        GraphFormat::Mermaid => print!("{}", medalign_engine::render_mermaid(&tree)),
    }
    Ok(ExitCode::SUCCESS)
}

fn target_key(plan: &Plan, store: &Store, target: &str) -> anyhow::Result<String> {
    if plan.index(target).is_some() {
        return match store.read_ref(&plan.name, target) {
            Some(r) => Ok(r.key),
            None => bail!("stage \"{target}\" has never been built; run `medalign run --until {target}` first"),
        };
    }
    match store.resolve_prefix(target)? {
        Some(k) => Ok(k),
        // Neither a key nor a stage: the error lists the stage ids, with a "did you mean".
        None => Err(plan.require(target).expect_err("target is not a stage id").into()),
    }
}

/// `medalign dag`.
pub fn dag(args: DagArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_or_exit!(&args.manifest);
    let edges: Vec<(usize, usize, String)> = plan
        .stages
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.inputs.iter().map(move |b| (b.stage, i, format!("{} -> {}", b.output, b.slot)))
        })
        .collect();
    match args.format {
        GraphFormat::Text => {
            for s in &plan.stages {
                let ins: Vec<String> = s
                    .inputs
                    .iter()
                    .map(|b| format!("{}.{}", plan.stages[b.stage].id, b.output))
                    .collect();
                let outs: Vec<String> =
                    s.outputs.iter().map(|o| format!("{} ({})", o.name, o.kind)).collect();
                let from =
                    if ins.is_empty() { String::new() } else { format!(" <- {}", ins.join(", ")) };
                println!("{} [{}]{from}  => {}", s.id, s.kind, outs.join(", "));
            }
        }
        GraphFormat::Dot => {
            println!("digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];", plan.name);
            for s in &plan.stages {
                println!("  \"{}\" [label=\"{}\\n[{}]\"];", s.id, s.id, s.kind);
            }
            for (a, b, label) in &edges {
                println!(
                    "  \"{}\" -> \"{}\" [label=\"{label}\"];",
                    plan.stages[*a].id, plan.stages[*b].id
                );
            }
            println!("}}");
        }
        GraphFormat::Mermaid => {
            println!("flowchart LR");
            for s in &plan.stages {
                println!("  {}[\"{}<br/>{}\"]", s.id, s.id, s.kind);
            }
            for (a, b, label) in &edges {
                println!("  {} -->|{label}| {}", plan.stages[*a].id, plan.stages[*b].id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `medalign validate`.
pub fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_or_exit!(&args.manifest);
    eprintln!(
        "{}: ok ({} stages, store {})",
        args.manifest.manifest.display(),
        plan.stages.len(),
        plan.store_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `medalign report`.
pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let plan = plan_or_exit!(&args.manifest.args());
    let store = Store::open(&plan.store_dir)?;
    let key = target_key(&plan, &store, &args.target)?;
    match eval_report(&store.artifact_dir(&key)) {
        Ok((table, html)) => {
            print!("{table}");
            if let Some(html) = html {
                eprintln!("HTML report: {}", html.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!("{} is not an eval artifact: {e}", args.target),
    }
}

/// An eval artifact's base-vs-tuned table and its HTML report (when written), if `dir` is one.
pub fn eval_report(dir: &Path) -> Result<(String, Option<PathBuf>), String> {
    let table = medalign_stages::eval::report_table(dir)?;
    let html = dir.join("report").join("report.html");
    Ok((table, html.is_file().then_some(html)))
}
