//! What `--model` names: a GGUF file, a safetensors directory, or a known model fetched on demand.

use std::path::{Path, PathBuf};

use crate::fetch::{KnownModel, KNOWN_MODELS};
use crate::{Error, Result};

/// A model on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    /// A single GGUF file (weights, tokenizer and chat template).
    Gguf(PathBuf),
    /// A Hugging Face directory: config.json, *.safetensors, tokenizer.json.
    SafetensorsDir(PathBuf),
}

impl ModelLocation {
    /// The path itself.
    pub fn path(&self) -> &Path {
        match self {
            Self::Gguf(p) | Self::SafetensorsDir(p) => p,
        }
    }
}

/// Resolves `spec`: an existing `.gguf` file, a directory with `config.json`, or a known model
/// name (fetched into the cache on first use).
pub fn resolve_model(spec: &str) -> Result<ModelLocation> {
    let path = Path::new(spec);
    if path.is_file() {
        return Ok(ModelLocation::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelLocation::SafetensorsDir(path.to_path_buf()));
        }
        return Err(Error::Unsupported(format!(
            "{spec}: a model directory needs config.json and *.safetensors"
        )));
    }
    if let Some(known) = KnownModel::by_name(spec) {
        return Ok(ModelLocation::Gguf(known.ensure()?));
    }
    let names: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
    Err(Error::UnknownModel(spec.into(), names.join(", ")))
}
