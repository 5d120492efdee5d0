//! [`RegistryError`]: what registering, resolving, loading or promoting a model can fail with.

use std::path::PathBuf;

/// An error of the registry, the resolver, the register stage or the `models` commands.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The SQLite registry failed.
    #[error("model registry {0}")]
    Registry(String),
    /// A reference names no registered version.
    #[error("no registered model {reference}; registered: {}", if known.is_empty() { "none (run a pipeline with a register stage)".to_string() } else { known.join(", ") })]
    NotFound {
        /// The reference as written.
        reference: String,
        /// Registered names with their version counts.
        known: Vec<String>,
    },
    /// A bad name, alias, version or param.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{path}: {source}", path = .0.display(), source = .1)]
    Io(PathBuf, #[source] std::io::Error),
    /// The base model could not be resolved.
    #[error("base model: {0}")]
    Model(String),
}
