//! [`resolve`]: what a model reference names. A registered directory (it holds
//! `registration.json`), any other existing path (a GGUF file or a safetensors directory), a
//! registry reference (`NAME`, `NAME@ALIAS`, `NAME:VERSION` in the store's registry), or a name
//! the model crate knows. Every command and stage that takes a model goes through here.

use std::path::{Path, PathBuf};

use medalign_model::{LanguageModel, LoadOptions};

use crate::files::{Registration, REGISTRATION_FILE};
use crate::model_ref::ModelRef;
use crate::versions::Registry;
use crate::RegistryError;

/// The store commands use when `--store` and `MEDALIGN_STORE` are absent: the default manifest's.
pub const DEFAULT_STORE: &str = "pipelines/.medalign";

/// A resolved model reference: what to load, and the names it answers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSource {
    /// What the model crate loads: a GGUF file, a safetensors directory or a known name.
    pub spec: String,
    /// A PEFT adapter directory to apply on it.
    pub adapter: Option<PathBuf>,
    /// The name it is served and reported under: `medalign:3`, a file name, a known name.
    pub id: String,
    /// Other names that reach it: the reference as written, the registry name and its aliases.
    pub aliases: Vec<String>,
    /// For a registered version, what pins its content: `NAME:VERSION` and the register
    /// artifact's key (or the registration file's hash). Stages put it in their cache keys, so a
    /// moved alias reruns them.
    pub registered: Option<String>,
}

impl ModelSource {
    /// Loads the model with `opts` and applies the adapter.
    pub fn load(&self, opts: &LoadOptions) -> Result<LanguageModel, RegistryError> {
        let mut lm = LanguageModel::load(&self.spec, opts)
            .map_err(|e| RegistryError::Model(format!("{}: {e}", self.spec)))?;
        if let Some(a) = &self.adapter {
            lm.load_adapter(a)
                .map_err(|e| RegistryError::Model(format!("adapter {}: {e}", a.display())))?;
        }
        Ok(lm)
    }

    fn registered_dir(
        dir: &Path,
        reference: &str,
        key: Option<&str>,
    ) -> Result<ModelSource, RegistryError> {
        let reg = Registration::read(dir)?;
        let (spec, adapter) = reg.load_plan(dir);
        let id = format!("{}:{}", reg.name, reg.version);
        let pin = match key {
            Some(k) => k.to_string(),
            None => {
                let file = dir.join(REGISTRATION_FILE);
                let bytes = std::fs::read(&file).map_err(|e| RegistryError::Io(file, e))?;
                blake3::hash(&bytes).to_hex().to_string()
            }
        };
        let mut aliases = vec![reference.to_string(), reg.name.clone()];
        aliases.dedup();
        Ok(ModelSource { spec, adapter, registered: Some(format!("{id} {pin}")), id, aliases })
    }
}

/// Resolves `reference`. Relative paths are taken from `base_dir` (a manifest's directory, or
/// `.` on the command line); registry references are looked up in the registry of `store`.
pub fn resolve(
    reference: &str,
    base_dir: &Path,
    store: &Path,
) -> Result<ModelSource, RegistryError> {
    let path = base_dir.join(reference);
    if path.join(REGISTRATION_FILE).is_file() {
        return ModelSource::registered_dir(&path, reference, None);
    }
    if path.exists() {
        let spec = path.to_string_lossy().into_owned();
        let id =
            path.file_name().map_or_else(|| spec.clone(), |n| n.to_string_lossy().into_owned());
        return Ok(ModelSource {
            spec,
            adapter: None,
            id,
            aliases: vec![reference.to_string()],
            registered: None,
        });
    }
    let registry_syntax = reference.contains('@') || reference.contains(':');
    if let Ok(r) = reference.parse::<ModelRef>() {
        match Registry::open_existing(store)? {
            Some(registry) => match registry.get(&r) {
                Ok(v) => {
                    let mut source = ModelSource::registered_dir(&v.model_dir, reference, v.artifact_key.as_deref())?;
                    source.aliases.extend(v.aliases.iter().map(|a| format!("{}@{a}", v.name)));
                    return Ok(source);
                }
                Err(e) if registry_syntax => return Err(e),
                Err(_) => {}
            },
            None if registry_syntax => {
                return Err(RegistryError::NotFound {
                    reference: format!("{reference} (no model registry in {}: run a pipeline with a register stage, or pass --store)", store.display()),
                    known: Vec::new(),
                })
            }
            None => {}
        }
    }
    Ok(ModelSource {
        spec: reference.to_string(),
        adapter: None,
        id: reference.to_string(),
        aliases: vec![reference.to_string()],
        registered: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::versions::NewVersion;
    use std::collections::BTreeMap;

    fn register(store: &Path, model_dir: &Path, key: &str, aliases: &[&str]) -> u32 {
        std::fs::create_dir_all(model_dir.join("adapter")).unwrap();
        let mut reg = Registry::open(store).unwrap();
        let v = reg
            .register(&NewVersion {
                name: "med".into(),
                description: String::new(),
                base_model: "smollm2-135m-instruct".into(),
                base_model_hash: "h".into(),
                model_dir: model_dir.to_path_buf(),
                adapter: Some(model_dir.join("adapter")),
                merged: None,
                gguf: None,
                metrics: BTreeMap::new(),
                artifact_key: Some(key.into()),
                pin: "p".into(),
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
            })
            .unwrap();
        Registration {
            name: "med".into(),
            version: v.version,
            base_model: "smollm2-135m-instruct".into(),
            base_model_hash: "h".into(),
            adapter: Some("adapter".into()),
            merged: None,
            gguf: None,
        }
        .write(model_dir)
        .unwrap();
        v.version
    }

    #[test]
    fn registry_names_aliases_and_versions_resolve_to_base_plus_adapter() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (one, two) = (dir.path().join("v1"), dir.path().join("v2"));
        register(&store, &one, "k1", &["staging"]);
        register(&store, &two, "k2", &[]);
        let here = dir.path();
        let latest = resolve("med@latest", here, &store).unwrap();
        assert_eq!((latest.id.as_str(), latest.spec.as_str()), ("med:2", "smollm2-135m-instruct"));
        assert_eq!(latest.adapter, Some(two.join("adapter")));
        assert_eq!(
            resolve("med", here, &store).unwrap(),
            ModelSource { aliases: vec!["med".into(), "med@latest".into()], ..latest.clone() }
        );
        let staging = resolve("med@staging", here, &store).unwrap();
        assert_eq!(
            (staging.id.as_str(), staging.registered.as_deref()),
            ("med:1", Some("med:1 k1"))
        );
        assert_eq!(resolve("med:1", here, &store).unwrap().adapter, Some(one.join("adapter")));
        // The registered directory itself, by path.
        let by_dir = resolve("v2", here, &store).unwrap();
        assert_eq!(
            (by_dir.id.as_str(), by_dir.adapter.clone()),
            ("med:2", Some(two.join("adapter")))
        );
        assert!(by_dir.registered.unwrap().starts_with("med:2 "));
    }

    #[test]
    fn paths_and_known_names_pass_through_and_bad_registry_references_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::write(dir.path().join("m.gguf"), b"x").unwrap();
        let file = resolve("m.gguf", dir.path(), &store).unwrap();
        assert_eq!(
            (file.spec, file.id, file.registered),
            (dir.path().join("m.gguf").to_string_lossy().into_owned(), "m.gguf".into(), None)
        );
        let known = resolve("smollm2-135m-instruct", dir.path(), &store).unwrap();
        assert_eq!((known.spec.as_str(), known.adapter), ("smollm2-135m-instruct", None));
        let e = resolve("med@latest", dir.path(), &store).unwrap_err().to_string();
        assert!(e.contains("no model registry in") && e.contains("med@latest"), "{e}");
        register(&store, &dir.path().join("v1"), "k1", &[]);
        let e = resolve("med@production", dir.path(), &store).unwrap_err().to_string();
        assert!(e.contains("med@production") && e.contains("med (1 versions)"), "{e}");
        assert_eq!(
            resolve("other", dir.path(), &store).unwrap().spec,
            "other",
            "a bare unregistered name goes to the model crate"
        );
    }
}
