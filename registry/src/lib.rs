//! The model registry and the one model resolver: `medalign@latest`, `medalign:3`, a registered
//! directory, a GGUF file, a safetensors directory or a known name, each turned into a base
//! model plus an optional LoRA adapter that every command and stage loads the same way.

mod error;
mod files;
mod model_ref;
mod resolve;
mod versions;

pub use error::RegistryError;
pub use files::{hash_model, Registration, REGISTRATION_FILE};
pub use model_ref::ModelRef;
pub use resolve::{resolve, ModelSource, DEFAULT_STORE};
pub use versions::{check_name, ModelVersion, NewVersion, Registry, LATEST, REGISTRY_FILE};
