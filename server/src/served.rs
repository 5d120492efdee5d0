//! The model a server answers with: any reference the registry's resolver takes (`medalign@latest`,
//! `medalign:3`, a registered directory, a GGUF file, a safetensors directory, a known name),
//! loaded for inference, with the names requests may use for it.

use std::path::Path;

use medalign_model::{LanguageModel, LoadOptions};

use crate::error::ServeError;

/// A loaded model and the names it answers to.
pub struct ServedModel {
    /// The model.
    pub lm: LanguageModel,
    /// The id in `/v1/models` and responses (e.g. `medalign:3`, or the file name).
    pub id: String,
    /// Names requests may use besides the id.
    pub aliases: Vec<String>,
}

/// Resolves `reference` (registry references are looked up in `store`) and loads it.
pub fn load(reference: &str, store: &Path) -> Result<ServedModel, ServeError> {
    let model = |e: medalign_registry::RegistryError| ServeError::Model(e.to_string());
    let source = medalign_registry::resolve(reference, Path::new("."), store).map_err(model)?;
    let lm = source.load(&LoadOptions::inference()).map_err(model)?;
    Ok(ServedModel { lm, id: source.id, aliases: source.aliases })
}
