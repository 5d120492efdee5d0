//! The run of an `export` stage: link the adapter into the output, merge, write the GGUFs.

use medalign_engine::{RunContext, StageError};

use super::config::ExportConfig;
use super::merge::export_merged;

/// Exports the `adapter` input merged into `cfg.model`.
pub fn run(cfg: &ExportConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let adapter = cx.input("adapter").ok_or("export needs an `adapter` input")?.dir.clone();
    let out = cx.output_dir("model").to_path_buf();
    crate::files::link_tree(&adapter, &out)?;
    cx.progress().set_message("merging");
    let exported = export_merged(&cfg.model, &adapter, &out, &cfg.gguf)?;
    cx.metric("merged_matrices", exported.merged);
    for (ty, _, report) in &exported.gguf {
        cx.metric(&format!("gguf_{}_mb", ty.name()), report.bytes as f64 / 1048576.0);
        cx.metric(&format!("gguf_{}_fallback_matrices", ty.name()), report.fallbacks.len());
    }
    Ok(())
}
