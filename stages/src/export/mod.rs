//! The `export` stage kind: a LoRA adapter folded into its base model and written as a Hugging
//! Face directory for `transformers` (`merged/`) and, on request, GGUF files for llama.cpp.

mod config;
mod merge;
mod stage;

pub use config::ExportConfig;
pub use merge::export_merged;
