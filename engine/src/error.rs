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
    #[error("{path}: {source}{}", disk_full_hint(source))]
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

/// What to do when a write failed for lack of space, else nothing.
fn disk_full_hint(e: &std::io::Error) -> &'static str {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        " (the disk is full: free some space, e.g. with `medalign gc`, or move the store to a larger disk)"
    } else {
        ""
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_named_with_its_path() {
        let msg = EngineError::io(
            "/store/artifacts/k/manifest.json",
            std::io::Error::from_raw_os_error(28),
        )
        .to_string();
        assert!(
            msg.starts_with("/store/artifacts/k/manifest.json: No space left on device"),
            "{msg}"
        );
        assert!(msg.contains("the disk is full"), "{msg}");
    }
}
