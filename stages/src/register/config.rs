//! [`RegisterConfig`]: the `register` stage kind. It records a model version in the store's
//! registry (base model + optional adapter + eval metrics), copies the files into its artifact,
//! pins the artifact (and so its whole lineage) through `gc`, and can write a Vertex AI bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medalign_engine::{
    Arity, CheckContext, InputArtifact, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError, Store,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::vertex::{write_bundle, VertexParams};
use crate::files::link_tree;
use crate::kinds::adapter::ADAPTER;
use crate::kinds::eval_report::EVAL_REPORT;
use crate::kinds::exported_model::EXPORTED_MODEL;
use crate::kinds::registered_model::REGISTERED_MODEL;
use medalign_registry::{
    check_name, hash_model, NewVersion, Registration, Registry, RegistryError,
};

/// The model crate's default model, used when neither params nor the adapter name a base.
const DEFAULT_BASE_MODEL: &str = "smollm2-135m-instruct";

/// Registers a model version.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterConfig {
    /// Registry name of the model; versions of a name are numbered from 1.
    pub name: String,
    /// The base model: a known name (`smollm2-135m-instruct`), a GGUF file or a safetensors
    /// directory. Default: the adapter's `base_model_name_or_path`, else the default model.
    pub base_model: Option<String>,
    /// Aliases to point at the new version besides `latest` (e.g. `staging`).
    pub aliases: Vec<String>,
    /// Shown by `medalign models show`.
    pub description: String,
    /// Write a Vertex AI deployment bundle and its Model Registry upload request.
    pub vertex: Option<VertexParams>,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            name: "medalign".into(),
            base_model: None,
            aliases: Vec::new(),
            description: String::new(),
            vertex: None,
        }
    }
}

impl StageConfig for RegisterConfig {
    const KIND: &'static str = "register";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Registers a model version (base model + optional LoRA adapter, with eval metrics) in the \
        store's registry under `name`, moves `latest` and `aliases` to it, keeps it and its lineage through gc, and \
        optionally writes a Vertex AI bundle. `medalign models` lists, shows and promotes versions.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot {
                name: "adapter",
                kinds: &[ADAPTER.name, EXPORTED_MODEL.name],
                arity: Arity::Optional,
                doc: "The LoRA adapter (none: the base model alone).",
            },
            InputSlot {
                name: "eval",
                kinds: &[EVAL_REPORT.name],
                arity: Arity::Optional,
                doc: "The eval report whose metrics are recorded.",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "model", kind: REGISTERED_MODEL.name, doc: "The registered files." }]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        if let Err(e) = check_name("model name", &self.name) {
            errors.push(ParamError::new("name", e.to_string()));
        }
        for (i, a) in self.aliases.iter().enumerate() {
            if let Err(e) = check_name("alias", a) {
                errors.push(ParamError::new(format!("aliases[{i}]"), e.to_string()));
            }
        }
        if let Some(base) = &self.base_model {
            let known = medalign_model::fetch::KnownModel::by_name(base).is_some();
            if !known && !cx.resolve(base).exists() {
                let names: Vec<&str> =
                    medalign_model::fetch::KNOWN_MODELS.iter().map(|m| m.name).collect();
                errors.push(ParamError::new(
                    "base_model",
                    format!("{base} is neither a file nor a known model ({})", names.join(", ")),
                ));
            }
        }
        if let Some(v) = &self.vertex {
            if v.project.is_empty() || v.image.is_empty() {
                errors.push(ParamError::new("vertex", "needs `project` and `image`"));
            }
        }
        errors
    }

    fn env_facts(&self, _cx: &CheckContext) -> BTreeMap<String, String> {
        // A base model named by a known name is pinned by its wheel's sha256; a path is hashed at
        // run time and recorded, not keyed, so a moved file does not re-register.
        BTreeMap::new()
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        Ok(self.register(cx)?)
    }
}

/// The base model named by the adapter's `adapter_config.json`, if any.
fn adapter_base(adapter: &Path) -> Option<String> {
    let text = std::fs::read_to_string(adapter.join("adapter_config.json")).ok()?;
    let cfg: serde_json::Value = serde_json::from_str(&text).ok()?;
    cfg["base_model_name_or_path"].as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Numeric metrics of the eval artifact: its record's metrics, then `metrics.json` if present.
fn eval_metrics(
    store: &Store,
    eval: &InputArtifact,
) -> Result<BTreeMap<String, serde_json::Value>, RegistryError> {
    let mut out = BTreeMap::new();
    if let Some(rec) =
        store.record(&eval.key).map_err(|e| RegistryError::Registry(e.to_string()))?
    {
        out.extend(rec.metrics);
    }
    let file = eval.dir.join("metrics.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(m)) => out.extend(m),
            _ => {
                return Err(RegistryError::Invalid(format!(
                    "{}: expected a JSON object of metrics",
                    file.display()
                )))
            }
        }
    }
    Ok(out)
}

impl RegisterConfig {
    fn register(&self, cx: &mut RunContext<'_>) -> Result<(), RegistryError> {
        let out = cx.output_dir("model").to_path_buf();
        let adapter_in = cx.input("adapter").cloned();
        let base_spec = self
            .base_model
            .clone()
            .or_else(|| adapter_in.as_ref().and_then(|a| adapter_base(&a.dir)))
            .unwrap_or_else(|| DEFAULT_BASE_MODEL.to_string());
        let base_spec = match medalign_model::fetch::KnownModel::by_name(&base_spec) {
            Some(_) => base_spec,
            None => cx.resolve(&base_spec).to_string_lossy().into_owned(),
        };
        let location = medalign_model::resolve_model(&base_spec)
            .map_err(|e| RegistryError::Model(e.to_string()))?;
        let base_hash = hash_model(location.path())?;

        let mut reg = Registration {
            name: self.name.clone(),
            version: 0,
            base_model: base_spec.clone(),
            base_model_hash: base_hash.clone(),
            adapter: None,
            merged: None,
            gguf: None,
        };
        if let Some(a) = &adapter_in {
            link_tree(&a.dir, &out.join("adapter"))
                .map_err(|e| RegistryError::Io(a.dir.clone(), e))?;
            if out.join("adapter/adapter_config.json").is_file() {
                reg.adapter = Some("adapter".into());
            }
            if out.join("adapter/merged/config.json").is_file() {
                reg.merged = Some("adapter/merged".into());
            }
            reg.gguf = first_gguf(&out.join("adapter")).map(|f| format!("adapter/{f}"));
            if reg.adapter.is_none() && reg.merged.is_none() && reg.gguf.is_none() {
                return Err(RegistryError::Invalid(format!(
                    "adapter input {}: no adapter_config.json, merged/config.json or *.gguf in {}",
                    a.stage,
                    a.dir.display()
                )));
            }
        }
        let store =
            Store::open(cx.store_dir()).map_err(|e| RegistryError::Registry(e.to_string()))?;
        let metrics = match cx.input("eval") {
            Some(e) => eval_metrics(&store, e)?,
            None => BTreeMap::new(),
        };
        let key = cx.key().map(str::to_string);
        let model_dir = match &key {
            Some(k) => store.artifact_dir(k).join("model"),
            None => out.clone(),
        };
        let pin = format!(
            "model-{}-{}",
            self.name,
            key.as_deref().map_or("standalone", |k| &k[..k.len().min(16)])
        );
        let joined = |p: &Option<String>| p.as_ref().map(|p| model_dir.join(p));
        let new = NewVersion {
            name: self.name.clone(),
            description: self.description.clone(),
            base_model: base_spec,
            base_model_hash: base_hash,
            model_dir: model_dir.clone(),
            adapter: joined(&reg.adapter),
            merged: joined(&reg.merged),
            gguf: joined(&reg.gguf),
            metrics,
            artifact_key: key,
            pin: pin.clone(),
            aliases: self.aliases.clone(),
        };
        let version = Registry::open(cx.store_dir())?.register(&new)?;
        reg.version = version.version;
        reg.write(&out)?;
        if let Some(v) = &self.vertex {
            let base_file: Option<PathBuf> = Some(location.path().to_path_buf());
            write_bundle(
                &out.join("vertex"),
                &out,
                base_file.as_deref(),
                &reg,
                v,
                &version.aliases,
                &self.description,
            )?;
            cx.metric("vertex_bundle", "model/vertex");
        }
        cx.pin(pin, format!("registered {} v{}", self.name, version.version));
        cx.metric("name", self.name.clone());
        cx.metric("version", version.version);
        cx.metric("aliases", version.aliases.join(","));
        Ok(())
    }
}

fn first_gguf(dir: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".gguf"))
        .collect();
    names.sort();
    names.into_iter().next()
}
