//! The model subcommands on their own, for trying the crate before the `medalign` binary wires
//! them in: `cargo run --release -p medalign-model --example model_cli -- generate --prompt hi`.

use clap::{Parser, Subcommand};
use medalign_model::cli::{run_bench_generate, run_generate, run_score, BenchGenerateArgs, GenerateArgs, ScoreArgs};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Generate(GenerateArgs),
    Score(ScoreArgs),
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    Generate(BenchGenerateArgs),
}

fn main() {
    let result = match Cli::parse().command {
        Command::Generate(a) => run_generate(&a),
        Command::Score(a) => run_score(&a),
        Command::Bench { what: Bench::Generate(a) } => run_bench_generate(&a).map(|_| ()),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
