//! The files of a registered version: `registration.json` (what to load and how it was made),
//! the copied adapter, and the base model's content hash.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RegistryError;

/// File name of the registration record inside a registered model directory.
pub const REGISTRATION_FILE: &str = "registration.json";

/// What `medalign serve` needs to load a registered version, written beside its files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Model name.
    pub name: String,
    /// Version in the registry that wrote it.
    pub version: u32,
    /// The base model: a known name, or a path (absolute, or relative to this directory).
    pub base_model: String,
    /// BLAKE3 of the base model's weights.
    pub base_model_hash: String,
    /// The PEFT adapter directory, relative to this directory.
    pub adapter: Option<String>,
    /// Merged safetensors weights, relative to this directory (loaded instead of base + adapter).
    pub merged: Option<String>,
    /// A whole-model GGUF file, relative to this directory (loaded instead of base + adapter).
    pub gguf: Option<String>,
}

impl Registration {
    /// Reads `dir/registration.json`.
    pub fn read(dir: &Path) -> Result<Registration, RegistryError> {
        let path = dir.join(REGISTRATION_FILE);
        let bytes = std::fs::read(&path).map_err(|e| RegistryError::Io(path.clone(), e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Writes `dir/registration.json`.
    pub fn write(&self, dir: &Path) -> Result<(), RegistryError> {
        let path = dir.join(REGISTRATION_FILE);
        let text = serde_json::to_vec_pretty(self).expect("registration serializes");
        std::fs::write(&path, text).map_err(|e| RegistryError::Io(path, e))
    }

    /// The model spec to load first (merged weights, a GGUF, or the base model) and the adapter
    /// to put on it, as paths resolved against `dir`.
    pub fn load_plan(&self, dir: &Path) -> (String, Option<PathBuf>) {
        let local = |p: &str| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        if let Some(m) = self.merged.as_deref().or(self.gguf.as_deref()) {
            return (local(m).to_string_lossy().into_owned(), None);
        }
        let base = if Path::new(&self.base_model).components().count() > 1
            || dir.join(&self.base_model).exists()
        {
            local(&self.base_model).to_string_lossy().into_owned()
        } else {
            self.base_model.clone()
        };
        (base, self.adapter.as_deref().map(local))
    }
}

/// BLAKE3 of one file, read through a memory map on all cores.
fn hash_file(path: &Path) -> Result<String, RegistryError> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path).map_err(|e| RegistryError::Io(path.to_path_buf(), e))?;
    Ok(h.finalize().to_hex().to_string())
}

/// BLAKE3 of a model's weights: the GGUF file, or the `*.safetensors` of a directory in name
/// order (each file's hash fed into one hasher).
pub fn hash_model(path: &Path) -> Result<String, RegistryError> {
    if path.is_file() {
        return hash_file(path);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| RegistryError::Io(path.to_path_buf(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(RegistryError::Model(format!("{}: no *.safetensors to hash", path.display())));
    }
    let mut h = blake3::Hasher::new();
    for f in files {
        let one = hash_file(&f)?;
        h.update(one.as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_plan_prefers_merged_weights_then_base_plus_adapter() {
        let dir = Path::new("/models/m");
        let mut r = Registration {
            name: "m".into(),
            version: 1,
            base_model: "smollm2-135m-instruct".into(),
            base_model_hash: "h".into(),
            adapter: Some("adapter".into()),
            merged: None,
            gguf: None,
        };
        assert_eq!(
            r.load_plan(dir),
            ("smollm2-135m-instruct".to_string(), Some(dir.join("adapter")))
        );
        r.gguf = Some("model.gguf".into());
        assert_eq!(r.load_plan(dir), ("/models/m/model.gguf".to_string(), None));
    }
}
