//! `bench train` on the cached SmolLM2 (ignored: it needs the model and takes minutes).
//! `MEDALIGN_BENCH_ARGS="--batch 4 --seq 256 --rank 16 --steps 5 --qlora"` picks the shape.

use clap::Parser;
use medalign_stages::train::bench::{run, BenchTrainArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchTrainArgs,
}

#[test]
#[ignore = "needs the cached SmolLM2-135M-Instruct GGUF; minutes of CPU"]
fn bench_train_on_smollm2() {
    let extra = std::env::var("MEDALIGN_BENCH_ARGS")
        .unwrap_or_else(|_| "--batch 4 --seq 256 --rank 16 --steps 5".into());
    let cli = Cli::parse_from(
        std::iter::once("bench".to_string())
            .chain(extra.split_whitespace().map(String::from))
            .chain(["--json".into()]),
    );
    let r = run(&cli.args).unwrap();
    assert!(r.tokens_per_s > 0.0 && r.peak_rss_mb > 0.0);
}
