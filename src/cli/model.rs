//! Loading the model a command names: any reference the registry's resolver takes, from the
//! current directory and the `--store` registry, for inference.

use std::path::Path;

use medalign_model::{LanguageModel, LinearFormat, LoadOptions};

/// Loads `reference` (quantized unless `f32`) and applies `adapter` when given.
pub fn load(
    reference: &str,
    store: &Path,
    f32: bool,
    adapter: Option<&Path>,
) -> anyhow::Result<LanguageModel> {
    let t0 = std::time::Instant::now();
    let source = medalign_registry::resolve(reference, Path::new("."), store)?;
    if source.adapter.is_some() && adapter.is_some() {
        anyhow::bail!("{reference} is registered with its own adapter; leave out --adapter");
    }
    let format = if f32 { LinearFormat::F32 } else { LinearFormat::Quantized };
    let mut lm = source.load(&LoadOptions { format, ..LoadOptions::default() })?;
    if let Some(dir) = adapter {
        lm.load_adapter(dir)?;
    }
    eprintln!("loaded {} in {:.1}s", source.id, t0.elapsed().as_secs_f64());
    Ok(lm)
}
