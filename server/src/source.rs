//! What `--model` names, resolved to a loaded model: a registered model (`NAME`, `NAME@ALIAS`,
//! `NAME:VERSION` in the store's registry), a registered model directory (`registration.json`),
//! or anything the model crate loads (a GGUF file, a safetensors directory, a known name).

use std::path::Path;

use medalign_model::{LanguageModel, LoadOptions};
use medalign_stages::register::{ModelRef, Registration, Registry, REGISTRATION_FILE};

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

/// Loads a registered model directory: merged weights, a GGUF, or the base model plus adapter.
pub fn load_registered_dir(dir: &Path) -> Result<(LanguageModel, Registration), ServeError> {
    let reg = Registration::read(dir).map_err(|e| ServeError::Model(e.to_string()))?;
    let (spec, adapter) = reg.load_plan(dir);
    let mut lm = LanguageModel::load(&spec, &LoadOptions::inference()).map_err(|e| ServeError::Model(format!("{spec}: {e}")))?;
    if let Some(a) = adapter {
        lm.load_adapter(&a).map_err(|e| ServeError::Model(format!("adapter {}: {e}", a.display())))?;
    }
    Ok((lm, reg))
}

/// Resolves and loads `spec` (registry names are looked up in `store`).
pub fn load(spec: &str, store: &Path) -> Result<ServedModel, ServeError> {
    let path = Path::new(spec);
    if path.join(REGISTRATION_FILE).is_file() {
        let (lm, reg) = load_registered_dir(path)?;
        let id = format!("{}:{}", reg.name, reg.version);
        return Ok(ServedModel { lm, aliases: vec![spec.to_string(), reg.name.clone()], id });
    }
    if !path.exists() {
        if let Some(registry) = Registry::open_existing(store).map_err(|e| ServeError::Model(e.to_string()))? {
            if let Ok(r) = spec.parse::<ModelRef>() {
                match registry.get(&r) {
                    Ok(v) => {
                        let (lm, _) = load_registered_dir(&v.model_dir)?;
                        let mut aliases = vec![spec.to_string(), v.name.clone()];
                        aliases.extend(v.aliases.iter().map(|a| format!("{}@{a}", v.name)));
                        return Ok(ServedModel { lm, id: format!("{}:{}", v.name, v.version), aliases });
                    }
                    Err(e) if spec.contains('@') || spec.contains(':') => return Err(ServeError::Model(e.to_string())),
                    Err(_) => {}
                }
            }
        } else if spec.contains('@') {
            return Err(ServeError::Model(format!(
                "{spec}: no model registry in {} (run a pipeline with a register stage, or pass --store)",
                store.display()
            )));
        }
    }
    let lm = LanguageModel::load(spec, &LoadOptions::inference()).map_err(|e| ServeError::Model(format!("{spec}: {e}")))?;
    let id = path.file_name().map(|n| n.to_string_lossy().into_owned()).filter(|_| path.exists()).unwrap_or_else(|| spec.to_string());
    Ok(ServedModel { lm, aliases: vec![spec.to_string()], id })
}
