//! The `quantized_model` artifact kind: a frozen quantized base made by quantize, and the names of
//! its files.

use std::path::Path;

use medalign_engine::{ArtifactKind, StageError};

/// The quantized weights inside a `quantized_model` artifact.
pub const QUANTIZED_WEIGHTS_FILE: &str = "model.safetensors";
/// The quantization report inside a `quantized_model` artifact: format and per-matrix errors.
pub const QUANTIZATION_FILE: &str = "quantization.json";

/// The `quantized_model` artifact kind.
pub const QUANTIZED_MODEL: ArtifactKind = ArtifactKind {
    name: "quantized_model",
    doc: "a frozen quantized base: model.safetensors (NF4/ggml projections, f32 rest) and quantization.json (format, per-matrix errors)",
    schema_json: None,
};

/// Reads the `base_model` a `quantized_model` artifact was made from.
pub fn quantized_base_spec(dir: &Path) -> Result<String, StageError> {
    let path = dir.join(QUANTIZATION_FILE);
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    )?;
    Ok(v["base_model"]
        .as_str()
        .ok_or_else(|| format!("{}: no base_model", path.display()))?
        .to_string())
}
