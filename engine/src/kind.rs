//! The extension point: a stage kind is a typed params struct (`StageConfig`) that runs.
//!
//! YAML reaches a kind only through [`DynKind`], the object-safe face the registry stores;
//! stage authors implement the typed [`StageConfig`] and register it with [`KindRegistry::register`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::run_context::RunContext;

/// The error a stage returns: any error, with a message that tells the user what to fix.
pub type StageError = Box<dyn std::error::Error + Send + Sync>;

/// What an input slot accepts from upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// Exactly one upstream artifact.
    One,
    /// Zero or one.
    Optional,
    /// Any number, zero included.
    Many,
    /// One or more.
    AtLeastOne,
}

/// One named input of a stage kind, with the artifact kinds it can take.
#[derive(Clone, Copy, Debug)]
pub struct InputSlot {
    /// Slot name, used in the map form of `inputs:`.
    pub name: &'static str,
    /// Artifact kinds this slot accepts.
    pub kinds: &'static [&'static str],
    /// How many upstream artifacts it takes.
    pub arity: Arity,
    /// One line for `medalign stages`.
    pub doc: &'static str,
}

/// One named output of a stage kind. The first output is the one `inputs: [stage]` refers to.
#[derive(Clone, Copy, Debug)]
pub struct OutputSlot {
    /// Output name, used as `stage.output` downstream.
    pub name: &'static str,
    /// The artifact kind it holds.
    pub kind: &'static str,
    /// One line for `medalign stages`.
    pub doc: &'static str,
}

/// A kind of artifact that flows along edges, e.g. `examples`; table kinds carry an Arrow schema.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactKind {
    /// Name used in slot declarations.
    pub name: &'static str,
    /// One line for `medalign stages`.
    pub doc: &'static str,
    /// The Arrow schema as JSON (the files under `schemas/`), for kinds stored as a Parquet table.
    pub schema_json: Option<&'static str>,
}

/// File name of the Parquet table inside an output directory of a table kind.
pub const TABLE_FILE: &str = "data.parquet";

/// A problem with one param, found before anything runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// Path inside the stage's params, e.g. `sources[1].path`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ParamError {
    /// A new error at `path` (inside `params`).
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError { path: path.into(), message: message.into() }
    }
}

/// A file a stage reads from outside the store, hashed by content into its cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// The param that names it, e.g. `sources[1].path`.
    pub param: String,
    /// Absolute path.
    pub path: PathBuf,
}

/// What a stage sees of the manifest before running: where relative paths start, and the store
/// (whose model registry names like `medalign@latest` resolve in).
#[derive(Clone, Debug)]
pub struct CheckContext {
    /// Directory of the manifest file.
    pub manifest_dir: PathBuf,
    /// The pipeline's store.
    pub store_dir: PathBuf,
}

impl CheckContext {
    /// The context of a manifest in `manifest_dir` with the default store beside it.
    pub fn new(manifest_dir: impl Into<PathBuf>) -> Self {
        let manifest_dir = manifest_dir.into();
        CheckContext { store_dir: manifest_dir.join(".medalign"), manifest_dir }
    }

    /// A path from params, relative to the manifest unless absolute.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.manifest_dir.join(path)
        }
    }
}

/// The typed face of a stage kind: its params (serde, documented with doc comments) and how it runs.
pub trait StageConfig: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The `kind:` name in manifests.
    const KIND: &'static str;
    /// Implementation version: bump it when the same params and inputs would produce different output.
    const VERSION: u32;
    /// One paragraph for `medalign stages`.
    const DOC: &'static str;
    /// Input slots, in the order the list form of `inputs:` fills them.
    fn inputs() -> &'static [InputSlot];
    /// Output slots; the first is the default output.
    fn outputs() -> &'static [OutputSlot];
    /// Semantic checks beyond types (ranges, files that must exist), run by `validate`.
    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        Vec::new()
    }
    /// Files outside the store this stage reads; their content is part of the cache key.
    fn input_files(&self, _cx: &CheckContext) -> Vec<InputFile> {
        Vec::new()
    }
    /// Facts of the environment that change the output (not thread counts): part of the cache key.
    fn env_facts(&self, _cx: &CheckContext) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Does the work: reads inputs, writes every output directory, reports metrics.
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError>;
}

/// A stage instance with validated params, ready to key and run.
pub trait Stage: Send + Sync {
    /// The resolved params (defaults filled) as JSON, which the cache key hashes canonically.
    fn params(&self) -> serde_json::Value;
    /// See [`StageConfig::check`].
    fn check(&self, cx: &CheckContext) -> Vec<ParamError>;
    /// See [`StageConfig::input_files`].
    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile>;
    /// See [`StageConfig::env_facts`].
    fn env_facts(&self, cx: &CheckContext) -> BTreeMap<String, String>;
    /// See [`StageConfig::run`].
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError>;
}

impl<C: StageConfig> Stage for C {
    fn params(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("stage params serialize to JSON")
    }
    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        StageConfig::check(self, cx)
    }
    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        StageConfig::input_files(self, cx)
    }
    fn env_facts(&self, cx: &CheckContext) -> BTreeMap<String, String> {
        StageConfig::env_facts(self, cx)
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        StageConfig::run(self, cx)
    }
}

/// An error from turning a params mapping into a typed config.
#[derive(Clone, Debug)]
pub struct ParamsError {
    /// Path inside params (`""` for the params mapping itself).
    pub path: String,
    /// The message, already phrased for the user.
    pub message: String,
}

/// The object-safe face of a stage kind, stored in the registry.
pub trait DynKind: Send + Sync {
    /// See [`StageConfig::KIND`].
    fn name(&self) -> &'static str;
    /// See [`StageConfig::VERSION`].
    fn version(&self) -> u32;
    /// See [`StageConfig::DOC`].
    fn doc(&self) -> &'static str;
    /// See [`StageConfig::inputs`].
    fn inputs(&self) -> &'static [InputSlot];
    /// See [`StageConfig::outputs`].
    fn outputs(&self) -> &'static [OutputSlot];
    /// JSON Schema of the params, with every field's doc comment and default.
    fn params_schema(&self) -> serde_json::Value;
    /// Typed parse of a params mapping; every unknown key and the first type error are reported.
    fn build(&self, params: &serde_yaml::Value) -> Result<Box<dyn Stage>, Vec<ParamsError>>;
}

struct Kind<C>(std::marker::PhantomData<fn() -> C>);

impl<C: StageConfig> DynKind for Kind<C> {
    fn name(&self) -> &'static str {
        C::KIND
    }
    fn version(&self) -> u32 {
        C::VERSION
    }
    fn doc(&self) -> &'static str {
        C::DOC
    }
    fn inputs(&self) -> &'static [InputSlot] {
        C::inputs()
    }
    fn outputs(&self) -> &'static [OutputSlot] {
        C::outputs()
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(C)).expect("schema serializes")
    }
    fn build(&self, params: &serde_yaml::Value) -> Result<Box<dyn Stage>, Vec<ParamsError>> {
        crate::params::parse::<C>(params, &self.params_schema())
            .map(|c| Box::new(c) as Box<dyn Stage>)
    }
}

/// Every stage kind and artifact kind a binary knows.
#[derive(Default)]
pub struct KindRegistry {
    kinds: BTreeMap<&'static str, Box<dyn DynKind>>,
    artifacts: BTreeMap<&'static str, ArtifactKind>,
}

impl KindRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a stage kind.
    pub fn register<C: StageConfig>(&mut self) -> &mut Self {
        self.kinds.insert(C::KIND, Box::new(Kind::<C>(std::marker::PhantomData)));
        self
    }
    /// Adds an artifact kind.
    pub fn artifact(&mut self, kind: ArtifactKind) -> &mut Self {
        self.artifacts.insert(kind.name, kind);
        self
    }
    /// A stage kind by name.
    pub fn kind(&self, name: &str) -> Option<&dyn DynKind> {
        self.kinds.get(name).map(|k| k.as_ref())
    }
    /// All stage kinds, by name.
    pub fn kinds(&self) -> impl Iterator<Item = &dyn DynKind> {
        self.kinds.values().map(|k| k.as_ref())
    }
    /// An artifact kind by name.
    pub fn artifact_kind(&self, name: &str) -> Option<&ArtifactKind> {
        self.artifacts.get(name)
    }
    /// All artifact kinds, by name.
    pub fn artifact_kinds(&self) -> impl Iterator<Item = &ArtifactKind> {
        self.artifacts.values()
    }
}
