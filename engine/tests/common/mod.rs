//! Shared by the engine's integration tests: a project dir with a manifest, run with the test kinds.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medalign_engine::{KindRegistry, Plan, RunOptions, StageReport, StageStatus, Store};

pub struct Project {
    pub dir: tempfile::TempDir,
    pub registry: KindRegistry,
}

impl Project {
    pub fn new(manifest: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), manifest).unwrap();
        let mut registry = KindRegistry::new();
        medalign_engine::testkit::register(&mut registry);
        Project { dir, registry }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn manifest(&self) -> PathBuf {
        self.path().join("p.yaml")
    }
    pub fn edit(&self, manifest: &str) {
        std::fs::write(self.manifest(), manifest).unwrap();
    }
    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path().join(name), content).unwrap();
    }
    pub fn plan(&self) -> Plan {
        medalign_engine::load(&self.manifest(), &self.registry, &BTreeMap::new()).unwrap()
    }
    pub fn store(&self) -> Store {
        Store::open(self.path().join(".medalign")).unwrap()
    }
    pub fn run_with(&self, opts: RunOptions) -> Vec<StageReport> {
        medalign_engine::run(&self.plan(), &self.registry, &opts).unwrap()
    }
    pub fn run(&self) -> Vec<StageReport> {
        self.run_with(RunOptions::default())
    }
    pub fn status(&self) -> Vec<StageReport> {
        medalign_engine::status(&self.plan()).unwrap()
    }
    /// The text output of a stage's current artifact.
    pub fn text(&self, stage: &str) -> String {
        let key = self.store().read_ref(&self.plan().name, stage).unwrap().key;
        std::fs::read_to_string(self.store().artifact_dir(&key).join("text/text.txt")).unwrap()
    }
}

/// `id status` pairs, for compact assertions.
pub fn statuses(reports: &[StageReport]) -> Vec<(String, StageStatus)> {
    reports.iter().map(|r| (r.id.clone(), r.status)).collect()
}

pub fn by_id<'a>(reports: &'a [StageReport], id: &str) -> &'a StageReport {
    reports.iter().find(|r| r.id == id).unwrap()
}

pub fn s(pairs: &[(&str, StageStatus)]) -> Vec<(String, StageStatus)> {
    pairs.iter().map(|(a, b)| (a.to_string(), *b)).collect()
}
