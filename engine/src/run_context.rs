//! What a running stage sees: its input artifacts, its output directories, metrics and progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kind::{CheckContext, TABLE_FILE};
use crate::progress::StageProgress;

/// One upstream artifact bound to an input slot.
#[derive(Clone, Debug)]
pub struct InputArtifact {
    /// The upstream stage id in the manifest.
    pub stage: String,
    /// Which of its outputs.
    pub output: String,
    /// Its artifact kind.
    pub kind: String,
    /// The cache key of the upstream artifact.
    pub key: String,
    /// The output's directory inside the store (read-only).
    pub dir: PathBuf,
}

impl InputArtifact {
    /// The Parquet table of a table kind.
    pub fn table(&self) -> PathBuf {
        self.dir.join(TABLE_FILE)
    }
}

/// Handed to [`crate::StageConfig::run`].
pub struct RunContext<'a> {
    pub(crate) stage_id: &'a str,
    pub(crate) key: Option<String>,
    pub(crate) check: &'a CheckContext,
    pub(crate) inputs: BTreeMap<&'static str, Vec<InputArtifact>>,
    pub(crate) outputs: BTreeMap<&'static str, PathBuf>,
    pub(crate) work_dir: PathBuf,
    pub(crate) store_dir: PathBuf,
    pub(crate) seed: u64,
    pub(crate) metrics: BTreeMap<String, serde_json::Value>,
    pub(crate) warnings: Vec<String>,
    pub(crate) pins: Vec<(String, String)>,
    pub(crate) progress: &'a StageProgress,
}

impl<'a> RunContext<'a> {
    /// A context for running a stage outside the executor (tests, benchmarks): outputs under `dir`.
    pub fn standalone(
        check: &'a CheckContext,
        progress: &'a StageProgress,
        dir: &Path,
        inputs: BTreeMap<&'static str, Vec<InputArtifact>>,
        outputs: &[&'static str],
    ) -> std::io::Result<Self> {
        let mut out = BTreeMap::new();
        for name in outputs {
            let d = dir.join(name);
            std::fs::create_dir_all(&d)?;
            out.insert(*name, d);
        }
        let work_dir = dir.join(".work");
        std::fs::create_dir_all(&work_dir)?;
        let store_dir = dir.join(".store");
        std::fs::create_dir_all(&store_dir)?;
        Ok(RunContext {
            stage_id: "standalone",
            key: None,
            check,
            inputs,
            outputs: out,
            work_dir,
            store_dir,
            seed: 0,
            metrics: BTreeMap::new(),
            warnings: Vec::new(),
            pins: Vec::new(),
            progress,
        })
    }

    /// The stage id in the manifest.
    pub fn stage_id(&self) -> &str {
        self.stage_id
    }
    /// The cache key of the artifact this run publishes (`None` outside the executor).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// A path from params, relative to the manifest unless absolute.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        self.check.resolve(path)
    }
    /// Directory of the manifest.
    pub fn manifest_dir(&self) -> &Path {
        &self.check.manifest_dir
    }
    /// What the stage's checks saw: the manifest's directory and the store.
    pub fn check_context(&self) -> &CheckContext {
        self.check
    }
    /// The artifacts bound to an input slot (empty for an unbound optional slot).
    pub fn inputs(&self, slot: &str) -> &[InputArtifact] {
        self.inputs.get(slot).map(|v| v.as_slice()).unwrap_or(&[])
    }
    /// The single artifact of a slot of arity one.
    pub fn input(&self, slot: &str) -> Option<&InputArtifact> {
        self.inputs(slot).first()
    }
    /// The (empty, created) directory the stage writes an output into.
    ///
    /// # Panics
    /// If the kind does not declare that output: a programming error in the stage.
    pub fn output_dir(&self, output: &str) -> &Path {
        self.outputs
            .get(output)
            .unwrap_or_else(|| panic!("stage kind writes undeclared output {output:?}"))
    }
    /// The (created) folder inside an output for the record of this run: timings, logs, event
    /// files. It is stored and listed with the output but not part of its content hash, so
    /// consumers stay cached when a rerun makes the same artifact.
    pub fn run_record_dir(&self, output: &str) -> std::io::Result<PathBuf> {
        let d = self.output_dir(output).join(crate::record::RUN_RECORD_DIR);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
    /// Where a table output's Parquet file goes.
    pub fn output_table(&self, output: &str) -> PathBuf {
        self.output_dir(output).join(TABLE_FILE)
    }
    /// A directory that survives a killed run of the same cache key (checkpoints go here); removed
    /// once the artifact is published.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }
    /// The store's root directory, for stages that keep state beside the artifacts (the model
    /// registry). Artifacts themselves are reached through [`Self::inputs`], never by path.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }
    /// A persistent cache directory shared by every run on this store, `<store>/cache/<name>`
    /// (created): e.g. answers of an LLM endpoint, so a rerun sends nothing already answered.
    pub fn cache_dir(&self, name: &str) -> std::io::Result<PathBuf> {
        let d = self.store_dir.join("cache").join(name);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
    /// The pipeline seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Records a metric (row counts, losses, accuracies) shown in the summary and kept in manifest.json.
    pub fn metric(&mut self, name: impl Into<String>, value: impl Into<serde_json::Value>) {
        self.metrics.insert(name.into(), value.into());
    }
    /// The metrics recorded so far.
    pub fn metrics(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.metrics
    }
    /// Records a warning: something the stage went on past but a person should see (an empty input
    /// file). Shown under the summary and kept in manifest.json, like metrics.
    pub fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }
    /// The warnings recorded so far.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
    /// Keeps this stage's artifact, and everything it was made from, through `gc` under `name`
    /// (a registered model does this); `note` says why.
    pub fn pin(&mut self, name: impl Into<String>, note: impl Into<String>) {
        self.pins.push((name.into(), note.into()));
    }
    /// The pins requested so far.
    pub fn pins(&self) -> &[(String, String)] {
        &self.pins
    }
    /// The stage's progress line.
    pub fn progress(&self) -> &StageProgress {
        self.progress
    }
}
