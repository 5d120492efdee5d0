//! `medalign bench train`: real LoRA (or QLoRA over an NF4 base) training steps on synthetic
//! tokens, timed after one warm-up step, the same measurement as `shared/peers/torch_peer.py`.

use std::sync::Arc;
use std::time::Instant;

use candle_core::Device;
use medalign_model::quant::{QuantFormat, QuantizedModel};
use medalign_model::weights::GgufSource;
use medalign_model::{
    resolve_model, Config, LanguageModel, LinearFormat, LoadOptions, LoraAdapter, LoraConfig,
    Model, ModelLocation, Weights,
};
use serde::Serialize;

use super::config::Precision;
use super::config::TrainConfig;
use super::data::{Sequence, SplitMix64};
use super::optimizer::Schedule;
use super::trainer::{Objective, Trainer};

/// Arguments of `medalign bench train`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchTrainArgs {
    /// Model: a known name, a GGUF file or a safetensors directory.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Rows per step.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per row.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// LoRA rank on all seven projections.
    #[arg(long, default_value_t = 16)]
    pub rank: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Only the last N tokens of each row carry loss (default: all).
    #[arg(long)]
    pub loss_tokens: Option<usize>,
    /// Freeze the base in NF4 (double quantization, blocks of 64), quantized tensor by tensor.
    #[arg(long)]
    pub qlora: bool,
    /// Gradient checkpointing: recompute each layer in backward.
    #[arg(long)]
    pub checkpointing: bool,
    /// Keep the frozen base's products in f32 (by default they run in bf16 where the CPU has
    /// AVX-512 BF16, as the train stage's `precision: auto` does).
    #[arg(long)]
    pub f32: bool,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchTrainReport {
    /// Tokens processed (batch x seq) per second.
    pub tokens_per_s: f64,
    /// Seconds per optimizer step.
    pub s_per_step: f64,
    /// Peak resident memory of the process.
    pub peak_rss_mb: f64,
    /// Whether the frozen products ran in bf16 (else f32).
    pub bf16_products: bool,
}

/// Peak resident set size (`VmHWM`), in MiB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn load(args: &BenchTrainArgs) -> Result<Model, Box<dyn std::error::Error + Send + Sync>> {
    if !args.qlora {
        return Ok(LanguageModel::load(&args.model, &LoadOptions::default())?.model);
    }
    let ModelLocation::Gguf(path) = resolve_model(&args.model)? else {
        return Err("--qlora in the bench reads a GGUF checkpoint".into());
    };
    let src = GgufSource::open(&path)?;
    let cfg = Config::from_gguf(src.content())?;
    let (q, _) = QuantizedModel::quantize(
        &src,
        &cfg,
        QuantFormat::Nf4 { block_size: 64, double_quant: true },
    )?;
    Ok(Model::new(&cfg, Weights::new(Arc::new(q), Device::Cpu, LinearFormat::Quantized))?)
}

/// Runs the benchmark; prints JSON when asked, a line on stderr otherwise.
pub fn run(
    args: &BenchTrainArgs,
) -> Result<BenchTrainReport, Box<dyn std::error::Error + Send + Sync>> {
    let mut model = load(args)?;
    let lora =
        LoraConfig { r: args.rank, lora_alpha: 2.0 * args.rank as f64, ..LoraConfig::default() };
    let adapter = LoraAdapter::init(&mut model, lora, 0)?;
    if args.checkpointing {
        model.enable_gradient_checkpointing();
    }
    let vocab = model.config().vocab_size;
    let mut rng = SplitMix64(7);
    let loss_from = args.seq - args.loss_tokens.unwrap_or(args.seq).min(args.seq);
    let train: Vec<Sequence> = (0..args.batch)
        .map(|_| Sequence {
            ids: (0..args.seq).map(|_| rng.below(vocab) as u32).collect(),
            mask: (0..args.seq).map(|i| i >= loss_from.max(1)).collect(),
        })
        .collect();
    let params = TrainConfig {
        lr: 1e-4,
        schedule: Schedule::Constant,
        warmup_steps: Some(0),
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.0,
        max_grad_norm: 1.0,
        batch_size: args.batch,
        grad_accum: 1,
        max_seq_len: args.seq,
        packing: false,
        checkpoint_every: 0,
        eval_every: 0,
        seed: 0,
        precision: if args.f32 { Precision::F32 } else { Precision::Auto },
        ..TrainConfig::default()
    };
    let work = std::env::temp_dir().join(format!("medalign-bench-train-{}", std::process::id()));
    let trainer = Trainer {
        model: &model,
        adapter: &adapter,
        params: &params,
        total_steps: args.steps + 1,
        pad_id: 0,
        objective: Objective::Sft { train, eval: vec![] },
        work_dir: work,
    };
    let mut timed_from = None;
    trainer.run(&mut |r| {
        if r.step == 1 {
            timed_from = Some(Instant::now());
        }
        true
    })?;
    let dt = timed_from.map_or(0.0, |t| t.elapsed().as_secs_f64()) / args.steps.max(1) as f64;
    let report = BenchTrainReport {
        tokens_per_s: (args.batch * args.seq) as f64 / dt.max(1e-9),
        s_per_step: dt,
        peak_rss_mb: peak_rss_mb(),
        bf16_products: params.precision.bf16(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!(
            "train: {:.1} tokens/s, {:.2} s/step, peak RSS {:.0} MB, products in {}",
            report.tokens_per_s,
            report.s_per_step,
            report.peak_rss_mb,
            if report.bf16_products { "bf16" } else { "f32" }
        );
    }
    Ok(report)
}
