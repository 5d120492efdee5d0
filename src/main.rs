//! `medalign`: run, inspect and serve MedAlign pipelines. Output for people goes to stderr, `--json`
//! output for programs to stdout.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: ingest builds millions of small strings on every thread,
/// and glibc served them from fresh pages the kernel had to zero (a fifth of ingest's CPU time);
/// BENCHMARKS.md and stages/BENCHMARKS.md have the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    medalign_model::process::configure();
    let cli = cli::Cli::parse();
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", medalign_engine::redact(&format!("{e:#}")));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
