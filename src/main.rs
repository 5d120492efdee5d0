//! `medalign`: run, inspect and serve MedAlign pipelines. Output for people goes to stderr, `--json`
//! output for programs to stdout.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    medalign_model::process::configure();
    let cli = cli::Cli::parse();
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
