//! `medalign score --model M --context C --continuation X [--json]`: log-likelihood of X given C.

use std::path::PathBuf;

use clap::Args;

use medalign_model::score_tokens;

/// Arguments of `medalign score`.
#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    /// A registered model (`medalign@latest`, `medalign:3`), a .gguf file, a safetensors
    /// directory, or a known name.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// The store whose model registry names like `medalign@latest` resolve in.
    #[arg(long, env = "MEDALIGN_STORE", default_value = medalign_registry::DEFAULT_STORE)]
    pub store: PathBuf,
    /// The conditioning text.
    #[arg(long)]
    pub context: String,
    /// The text whose likelihood is measured.
    #[arg(long)]
    pub continuation: String,
    /// A PEFT LoRA adapter directory to apply.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Quantized weights (faster, approximate) instead of the exact f32 ones eval uses.
    #[arg(long)]
    pub quantized: bool,
}

/// Runs `medalign score`.
pub fn run_score(args: &ScoreArgs) -> anyhow::Result<()> {
    let lm =
        super::model::load(&args.model, &args.store, !args.quantized, args.adapter.as_deref())?;
    let pair = lm.encode_pair(&args.context, &args.continuation)?;
    let ll = score_tokens(&lm.model, std::slice::from_ref(&pair), 4096)?[0];
    if args.json {
        println!(
            "{}",
            serde_json::json!({"logprob": ll.logprob, "tokens": ll.tokens, "is_greedy": ll.is_greedy,
                               "mean_logprob": ll.logprob / ll.tokens as f64})
        );
    } else {
        println!(
            "log-likelihood {:.4} over {} tokens (mean {:.4}, greedy: {})",
            ll.logprob,
            ll.tokens,
            ll.logprob / ll.tokens as f64,
            ll.is_greedy
        );
    }
    Ok(())
}
