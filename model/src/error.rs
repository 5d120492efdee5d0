//! The crate's one error type: every fallible function here returns [`Result`].

use std::path::PathBuf;

/// What can go wrong while loading, adapting or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("{path}: {source}{}", disk_full_hint(source))]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A JSON document (config.json, tokenizer_config.json, adapter_config.json) is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The document.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },

    /// The checkpoint describes something this crate does not implement.
    #[error("unsupported model: {0}")]
    Unsupported(String),

    /// A GGUF file lacks a metadata key the architecture needs.
    #[error("GGUF metadata key `{0}` is missing or has the wrong type")]
    GgufMetadata(String),

    /// A tensor the architecture needs is absent from the checkpoint.
    #[error("tensor `{0}` is missing from the checkpoint")]
    MissingTensor(String),

    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The chat template failed to compile or render.
    #[error("chat template: {0}")]
    ChatTemplate(#[from] minijinja::Error),

    /// A LoRA adapter is inconsistent with the model or with itself.
    #[error("LoRA adapter: {0}")]
    Lora(String),

    /// A request (generation or scoring) is invalid, e.g. an empty prompt.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The default model could not be fetched; the message says where to put it by hand.
    #[error("could not fetch model `{name}`: {reason}\n  to install it by hand, put the file at {}", target.display())]
    Fetch {
        /// The model name asked for.
        name: String,
        /// What failed (network, hash mismatch, archive).
        reason: String,
        /// Where the file is expected.
        target: PathBuf,
    },

    /// `--model` named neither a file, a directory nor a known model.
    #[error("unknown model `{0}`: give a .gguf file, a safetensors directory with config.json, or one of: {1}")]
    UnknownModel(String, String),
}

/// What to do when a write failed for lack of space, else nothing.
pub fn disk_full_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        " (the disk is full: free some space, e.g. with `medalign gc`, or move the store to a larger disk)"
    } else {
        ""
    }
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Wraps a JSON error with the document it concerns.
    pub fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Self::Json { path: path.into(), source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_with_its_path() {
        let e = Error::io(
            "/store/tmp/abc/model/quantized.safetensors.tmp",
            std::io::Error::from_raw_os_error(28),
        );
        let msg = e.to_string();
        assert!(
            msg.starts_with(
                "/store/tmp/abc/model/quantized.safetensors.tmp: No space left on device"
            ),
            "{msg}"
        );
        assert!(msg.contains("the disk is full"), "{msg}");
        let other = Error::io("/x", std::io::Error::from_raw_os_error(2)).to_string();
        assert!(!other.contains("disk is full"), "{other}");
    }
}
