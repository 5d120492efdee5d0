//! `medalign bench`: speed figures users can compare across machines.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::print_json;

/// Measure speed.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The engine: cached no-op run, status over a large store, file hashing.
    Engine(EngineArgs),
    /// Generation: prompt processing and decode tokens/s.
    Generate(super::bench_generate::BenchGenerateArgs),
    /// Training: LoRA/QLoRA steps on synthetic tokens (tokens/s, s/step, peak RSS).
    Train(medalign_stages::train::bench::BenchTrainArgs),
    /// Eval: benchmark questions scored per second.
    Eval(super::bench_eval::BenchEvalArgs),
    /// The server: concurrent streaming clients against one, first-token latency.
    Serve(ServeBenchArgs),
}

/// Server benchmark options.
#[derive(Args, Debug)]
pub struct ServeBenchArgs {
    #[command(flatten)]
    inner: medalign_server::bench::BenchServeArgs,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Engine benchmark options.
#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Size of the file to hash, in MiB.
    #[arg(long, default_value_t = 2048)]
    hash_mib: u64,
    /// Artifacts in the store for the status figure.
    #[arg(long, default_value_t = 10_000)]
    artifacts: usize,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs a benchmark.
pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        BenchCommand::Engine(a) => {
            let dir = tempfile::tempdir()?;
            let r =
                medalign_engine::bench::engine_bench(dir.path(), a.hash_mib << 20, a.artifacts)?;
            if a.json {
                print_json(&r)?;
            } else {
                eprintln!(
                    "no-op run, cached 8 stages: median {:.1} ms, max {:.1} ms",
                    r.noop_run_ms_median, r.noop_run_ms_max
                );
                eprintln!(
                    "status over {} artifacts: {:.1} ms; gc dry run: {:.1} ms",
                    r.store_artifacts, r.status_ms, r.gc_dry_run_ms
                );
                let peer = r
                    .md5sum_gb_per_s
                    .map(|m| format!(", md5sum {m:.2} GB/s (ratio {:.1}x)", r.blake3_gb_per_s / m))
                    .unwrap_or_default();
                eprintln!("hash {} MiB: blake3 {:.2} GB/s{peer}", a.hash_mib, r.blake3_gb_per_s);
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Train(a) => {
            // Prints its own figures (JSON on stdout with --json).
            medalign_stages::train::bench::run(&a).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Eval(a) => {
            super::bench_eval::bench_eval(a)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Serve(a) => {
            let r = medalign_server::bench::run(&a.inner)?;
            if a.json {
                print_json(&r)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Generate(a) => {
            // Prints its own figures (JSON on stdout with --json).
            super::bench_generate::run_bench_generate(&a)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
