//! `medalign bench generate`: prompt-processing and decode throughput on this machine, greedy,
//! with a KV cache, for users to size their hardware.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use clap::Args;
use serde::Serialize;

use anyhow::{bail, Result};
use medalign_model::KvCache;

const TEXT: &str =
    "Acetaminophen overdose can cause acute liver failure. Patients taking warfarin should avoid \
NSAIDs such as ibuprofen because of the increased risk of bleeding. ";

/// Arguments of `medalign bench generate`.
#[derive(Debug, Clone, Args)]
pub struct BenchGenerateArgs {
    /// A registered model (`medalign@latest`, `medalign:3`), a .gguf file, a safetensors
    /// directory, or a known name.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// The store whose model registry names like `medalign@latest` resolve in.
    #[arg(long, env = "MEDALIGN_STORE", default_value = medalign_registry::DEFAULT_STORE)]
    pub store: PathBuf,
    /// Prompt length.
    #[arg(long, default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens to decode (EOS is ignored).
    #[arg(long, default_value_t = 64)]
    pub new_tokens: usize,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Exact f32 weights instead of quantized ones.
    #[arg(long)]
    pub f32: bool,
    /// Also decode this many sequences together, one batched step per token (what a server
    /// does under load), and report their aggregate tokens/s.
    #[arg(long, default_value_t = 1)]
    pub sequences: usize,
}

/// The measured throughput.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Prompt tokens processed per second (one forward pass over the whole prompt).
    pub prefill_tokens_per_s: f64,
    /// Tokens generated per second after the prompt.
    pub decode_tokens_per_s: f64,
    /// Prompt length.
    pub prompt_tokens: usize,
    /// Tokens decoded.
    pub new_tokens: usize,
    /// With `--sequences N > 1`: tokens/s of all N sequences decoded together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batched_decode_tokens_per_s: Option<f64>,
}

/// Runs `medalign bench generate`.
pub fn run_bench_generate(args: &BenchGenerateArgs) -> Result<BenchReport> {
    let lm = super::model::load(&args.model, &args.store, args.f32, None)?;
    if args.prompt_tokens == 0 || args.new_tokens == 0 {
        bail!("--prompt-tokens and --new-tokens must be positive");
    }
    let mut ids = vec![];
    while ids.len() < args.prompt_tokens {
        ids.extend(lm.tokenizer.encode(TEXT, false)?);
    }
    ids.truncate(args.prompt_tokens);
    let dev = lm.model.device();
    // Warm-up: thread pools and allocator.
    let mut cache = lm.model.kv_cache();
    lm.model.forward_last(
        &Tensor::new(&ids[..8.min(ids.len())], dev)?.unsqueeze(0)?,
        Some(&mut cache),
        None,
    )?;
    let mut cache = lm.model.kv_cache();
    let t0 = Instant::now();
    let logits = lm.model.forward_last(
        &Tensor::new(ids.as_slice(), dev)?.unsqueeze(0)?,
        Some(&mut cache),
        None,
    )?;
    let mut next = logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?[0];
    let prefill = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for _ in 1..args.new_tokens {
        let logits =
            lm.model.forward_last(&Tensor::new(&[[next]], dev)?, Some(&mut cache), None)?;
        next = logits.argmax(candle_core::D::Minus1)?.to_vec1::<u32>()?[0];
    }
    let decode = t1.elapsed().as_secs_f64();
    let batched = if args.sequences > 1 {
        // Every sequence starts from the prompt's cache, fed a different first token.
        let mut caches: Vec<KvCache> = (0..args.sequences).map(|_| cache.clone()).collect();
        let mut tokens: Vec<u32> = (0..args.sequences as u32).map(|i| next + i).collect();
        let t2 = Instant::now();
        for _ in 1..args.new_tokens {
            let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
            tokens = lm
                .model
                .forward_rows(&tokens, &mut refs)?
                .argmax(candle_core::D::Minus1)?
                .to_vec1::<u32>()?;
        }
        Some(
            ((args.new_tokens - 1).max(1) * args.sequences) as f64
                / t2.elapsed().as_secs_f64().max(1e-9),
        )
    } else {
        None
    };
    let report = BenchReport {
        batched_decode_tokens_per_s: batched,
        prefill_tokens_per_s: ids.len() as f64 / prefill,
        // The first new token comes out of the prefill, as in llama.cpp's and torch's timings.
        decode_tokens_per_s: (args.new_tokens - 1).max(1) as f64 / decode.max(1e-9),
        prompt_tokens: ids.len(),
        new_tokens: args.new_tokens,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report).expect("serializable"));
    } else {
        eprintln!(
            "prompt {} tokens: {:.1} tok/s; decode {} tokens: {:.1} tok/s",
            report.prompt_tokens,
            report.prefill_tokens_per_s,
            report.new_tokens,
            report.decode_tokens_per_s
        );
        if let Some(b) = report.batched_decode_tokens_per_s {
            eprintln!("{} sequences decoded together: {b:.1} tok/s in all", args.sequences);
        }
    }
    Ok(report)
}
