//! The engine's error type.

use std::path::PathBuf;

use crate::diagnostic::Diagnostics;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The manifest has problems; each names its place.
    #[error("{0}")]
    Manifest(Diagnostics),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A stage failed while running.
    #[error("stage \"{stage}\" failed: {message}")]
    Stage {
        /// Stage id.
        stage: String,
        /// What it said.
        message: String,
    },
    /// An output did not match its artifact kind's schema, or was missing.
    #[error("stage \"{stage}\": output \"{output}\": {message}")]
    Output {
        /// Stage id.
        stage: String,
        /// Output name.
        output: String,
        /// What is wrong.
        message: String,
    },
    /// A command-line request that cannot be honoured (unknown stage id, missing artifact...).
    #[error("{0}")]
    Usage(String),
    /// The store holds something unreadable.
    #[error("store: {0}")]
    Store(String),
}

impl EngineError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.into(), source }
    }
}

/// Result with [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Adds the path to I/O errors.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| EngineError::io(path, e))
    }
}
