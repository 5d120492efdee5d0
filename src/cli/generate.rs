//! `medalign generate --model M --prompt P`: one chat turn, streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use medalign_model::{generate, GenerationConfig, Message, SamplingParams};

/// Arguments of `medalign generate`.
#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    /// A registered model (`medalign@latest`, `medalign:3`), a .gguf file, a safetensors
    /// directory, or a known name.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// The store whose model registry names like `medalign@latest` resolve in.
    #[arg(long, env = "MEDALIGN_STORE", default_value = medalign_registry::DEFAULT_STORE)]
    pub store: PathBuf,
    /// The user message.
    #[arg(long)]
    pub prompt: String,
    /// An optional system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Most new tokens.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Keep the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling threshold.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Penalty on repeated tokens (1 = none).
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop at this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Number of answers to sample.
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Exact f32 weights instead of quantized ones.
    #[arg(long)]
    pub f32: bool,
}

/// Runs `medalign generate`.
pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let lm = super::model::load(&args.model, &args.store, args.f32, args.adapter.as_deref())?;
    let ids = if args.raw {
        lm.tokenizer.encode(&args.prompt, true)?
    } else {
        let mut messages = vec![];
        if let Some(s) = &args.system {
            messages.push(Message::new("system", s));
        }
        messages.push(Message::new("user", &args.prompt));
        lm.chat_prompt_ids(&messages)?
    };
    let cfg = GenerationConfig {
        max_new_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        },
        stop: args.stop.clone(),
        eos_ids: lm.eos_ids(),
    };
    let prompts = vec![ids; args.n.max(1)];
    let t0 = std::time::Instant::now();
    let mut stdout = std::io::stdout().lock();
    let stream = prompts.len() == 1;
    let outs = generate(&lm.model, &lm.tokenizer, &prompts, &cfg, &mut |ev| {
        if stream && !ev.text.is_empty() {
            let _ = write!(stdout, "{}", ev.text);
            let _ = stdout.flush();
        }
        true
    })?;
    if stream {
        let _ = writeln!(stdout);
    } else {
        for (i, g) in outs.iter().enumerate() {
            let _ = writeln!(stdout, "--- answer {} ---\n{}", i + 1, g.text);
        }
    }
    let n: usize = outs.iter().map(|g| g.token_ids.len()).sum();
    eprintln!("{n} tokens in {:.2}s ({:?})", t0.elapsed().as_secs_f64(), outs[0].finish_reason);
    Ok(())
}
