//! The `generate`, `score` and `bench generate` subcommands as clap-derive argument structs and
//! the functions that run them; the binary wires them in. Text for people goes to stderr,
//! generated text and `--json` output to stdout.

mod bench;
mod generate;
mod score;

pub use bench::{run_bench_generate, BenchGenerateArgs, BenchReport};
pub use generate::{run_generate, GenerateArgs};
pub use score::{run_score, ScoreArgs};

use crate::pretrained::{LanguageModel, LoadOptions};
use crate::weights::LinearFormat;
use crate::Result;

/// Loads `model` (quantized unless `f32`) and the optional adapter.
fn load(model: &str, f32: bool, adapter: Option<&std::path::Path>) -> Result<LanguageModel> {
    let t0 = std::time::Instant::now();
    let opts = LoadOptions { format: if f32 { LinearFormat::F32 } else { LinearFormat::Quantized }, ..LoadOptions::default() };
    let mut lm = LanguageModel::load(model, &opts)?;
    if let Some(dir) = adapter {
        lm.load_adapter(dir)?;
    }
    eprintln!("loaded {} in {:.1}s", lm.location.path().display(), t0.elapsed().as_secs_f64());
    Ok(lm)
}
