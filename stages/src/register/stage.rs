//! The run of a `register` stage: it records a model version in the store's registry (base model +
//! optional adapter + eval metrics), copies the files into its artifact, pins the artifact (and so
//! its whole lineage) through `gc`, and can write a Vertex AI bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medalign_engine::{InputArtifact, RunContext, StageError, Store};
use medalign_registry::{hash_model, NewVersion, Registration, Registry, RegistryError};

use super::config::RegisterConfig;
use super::vertex::write_bundle;
use crate::files::link_tree;

/// The model crate's default model, used when neither params nor the adapter name a base.
const DEFAULT_BASE_MODEL: &str = "smollm2-135m-instruct";

/// Runs a stage with params `cfg`.
pub fn run(cfg: &RegisterConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    Ok(register(cfg, cx)?)
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

/// Records the version, copies its files and pins them.
fn register(cfg: &RegisterConfig, cx: &mut RunContext<'_>) -> Result<(), RegistryError> {
    let out = cx.output_dir("model").to_path_buf();
    let adapter_in = cx.input("adapter").cloned();
    let base_spec = cfg
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
        name: cfg.name.clone(),
        version: 0,
        base_model: base_spec.clone(),
        base_model_hash: base_hash.clone(),
        adapter: None,
        merged: None,
        gguf: None,
    };
    if let Some(a) = &adapter_in {
        link_tree(&a.dir, &out.join("adapter")).map_err(|e| RegistryError::Io(a.dir.clone(), e))?;
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
    let store = Store::open(cx.store_dir()).map_err(|e| RegistryError::Registry(e.to_string()))?;
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
        cfg.name,
        key.as_deref().map_or("standalone", |k| &k[..k.len().min(16)])
    );
    let joined = |p: &Option<String>| p.as_ref().map(|p| model_dir.join(p));
    let new = NewVersion {
        name: cfg.name.clone(),
        description: cfg.description.clone(),
        base_model: base_spec,
        base_model_hash: base_hash,
        model_dir: model_dir.clone(),
        adapter: joined(&reg.adapter),
        merged: joined(&reg.merged),
        gguf: joined(&reg.gguf),
        metrics,
        artifact_key: key,
        pin: pin.clone(),
        aliases: cfg.aliases.clone(),
    };
    let version = Registry::open(cx.store_dir())?.register(&new)?;
    reg.version = version.version;
    reg.write(&out)?;
    if let Some(v) = &cfg.vertex {
        let base_file: Option<PathBuf> = Some(location.path().to_path_buf());
        write_bundle(
            &out.join("vertex"),
            &out,
            base_file.as_deref(),
            &reg,
            v,
            &version.aliases,
            &cfg.description,
        )?;
        cx.metric("vertex_bundle", "model/vertex");
    }
    cx.pin(pin, format!("registered {} v{}", cfg.name, version.version));
    cx.metric("name", cfg.name.clone());
    cx.metric("version", version.version);
    cx.metric("aliases", version.aliases.join(","));
    Ok(())
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
