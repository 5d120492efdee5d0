//! The `register` stage kind and the model registry it writes: versions, aliases, files, eval
//! metrics and the artifact key whose lineage explains each version; plus the Vertex AI bundle
//! and the `medalign models` commands.

pub mod cli;
mod config;
mod error;
mod files;
mod model_ref;
mod registry;
pub mod vertex;

pub use config::{RegisterConfig, ADAPTER, EVAL_REPORT, REGISTERED_MODEL};
pub use vertex::VertexParams;
pub use error::RegisterError;
pub use files::{Registration, REGISTRATION_FILE};
pub use model_ref::ModelRef;
pub use registry::{check_name, ModelVersion, NewVersion, Registry, LATEST, REGISTRY_FILE};

#[cfg(test)]
mod tests;
