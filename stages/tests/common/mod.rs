//! Test helpers: build a stage from YAML params as a manifest would, and run it standalone.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medalign_engine::{
    CheckContext, InputArtifact, KindRegistry, RunContext, Stage, StageProgress,
};

/// The repository root (where `data/` lives).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `../shared/data`, when this checkout has it.
pub fn shared_data() -> Option<PathBuf> {
    let p = repo().join("../shared/data");
    p.is_dir().then_some(p)
}

/// A stage of `kind` built from YAML params, as the engine builds it from a manifest.
pub fn build(kind: &str, yaml: &str) -> Box<dyn Stage> {
    let mut registry = KindRegistry::new();
    medalign_stages::register(&mut registry);
    let params: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    match registry.kind(kind).unwrap().build(&params) {
        Ok(stage) => stage,
        Err(errors) => panic!(
            "params do not parse: {:?}",
            errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>()
        ),
    }
}

/// The result of a standalone run: where outputs went and the metrics.
#[derive(Debug)]
pub struct Ran {
    /// Holds the output directories.
    pub dir: tempfile::TempDir,
    /// The metrics the stage recorded.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The warnings the stage reported.
    pub warnings: Vec<String>,
}

impl Ran {
    /// An output's Parquet table.
    pub fn table(&self, output: &str) -> PathBuf {
        self.dir.path().join(output).join(medalign_engine::TABLE_FILE)
    }
    /// A metric as an integer.
    pub fn count(&self, name: &str) -> u64 {
        self.metrics
            .get(name)
            .and_then(|v| v.as_u64())
            .unwrap_or_else(|| panic!("no metric {name}: {:?}", self.metrics))
    }
    /// An output as an input artifact of a downstream stage.
    pub fn artifact(&self, output: &str) -> InputArtifact {
        InputArtifact {
            stage: "upstream".into(),
            output: output.into(),
            kind: "examples".into(),
            key: "test".into(),
            dir: self.dir.path().join(output),
        }
    }
}

/// Runs `stage` with the manifest in `manifest_dir`, returning its outputs and metrics or its error.
pub fn run(
    stage: &dyn Stage,
    manifest_dir: &Path,
    inputs: BTreeMap<&'static str, Vec<InputArtifact>>,
    outputs: &[&'static str],
) -> Result<Ran, String> {
    let check = CheckContext::new(manifest_dir.to_path_buf());
    let errors = stage.check(&check);
    assert!(errors.is_empty(), "params fail checks: {errors:?}");
    let progress = StageProgress::hidden();
    let dir = tempfile::tempdir().unwrap();
    let mut cx = RunContext::standalone(&check, &progress, dir.path(), inputs, outputs).unwrap();
    stage.run(&mut cx).map_err(|e| e.to_string())?;
    let (metrics, warnings) = (cx.metrics().clone(), cx.warnings().to_vec());
    Ok(Ran { dir, metrics, warnings })
}

/// Runs an ingest stage given its YAML params, with the manifest in `manifest_dir`.
pub fn ingest(yaml: &str, manifest_dir: &Path) -> Result<Ran, String> {
    run(build("ingest", yaml).as_ref(), manifest_dir, BTreeMap::new(), &["examples", "rejected"])
}
