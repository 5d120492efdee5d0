//! The `quantize` stage kind: a frozen 4-bit (NF4) or 8-bit base for QLoRA, with per-matrix
//! reconstruction errors; and its export mode, which folds a LoRA adapter into the base and
//! writes the merged model as safetensors + config.json for `transformers`.

mod config;
mod export;

pub use config::{QuantizeConfig, QuantizeMode, QUANTIZED_MODEL};
pub use export::export_merged;
