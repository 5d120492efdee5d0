//! The `quantize` stage kind: a frozen 4-bit (NF4) or 8-bit base for QLoRA, with per-matrix
//! reconstruction errors.

mod config;
mod stage;

pub use config::{open_source, QuantizeConfig};
