//! `medalign gc`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use medalign_engine::Store;

use super::{load_plan, print_json, registry, ManifestArgs};

/// Free artifacts nothing needs.
#[derive(Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    manifest: ManifestArgs,
    /// The store directory (instead of the manifest's).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Report what would be freed; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Collects garbage in the store.
pub fn gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let dir = match args.store {
        Some(d) => d,
        None => match load_plan(&args.manifest, &registry())? {
            Ok(plan) => plan.store_dir,
            Err(code) => return Ok(code),
        },
    };
    if !dir.is_dir() {
        bail!("no store at {}", dir.display());
    }
    let report = medalign_engine::gc(&Store::open(&dir)?, args.dry_run)?;
    if args.json {
        print_json(&report)?;
    }
    let verb = if args.dry_run { "would free" } else { "freed" };
    for (key, stage, bytes) in &report.freed {
        eprintln!("{verb} {} ({stage}, {bytes} bytes)", &key[..key.len().min(12)]);
    }
    for (key, bytes) in &report.work {
        eprintln!("{verb} work dir {} (checkpoints, {bytes} bytes)", &key[..key.len().min(12)]);
    }
    for path in &report.leftovers {
        eprintln!("{verb} leftover {}", path.display());
    }
    eprintln!(
        "{verb} {} artifact(s), {} work dir(s) and {} leftover(s), {:.1} MB; kept {}",
        report.freed.len(),
        report.work.len(),
        report.leftovers.len(),
        report.bytes as f64 / 1e6,
        report.kept
    );
    Ok(ExitCode::SUCCESS)
}
