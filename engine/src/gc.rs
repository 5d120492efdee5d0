//! Garbage collection: frees artifacts that no manifest ref and no pin (registered model) reaches
//! through lineage, and staging directories left by dead processes.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Result;
use crate::store::Store;

/// What gc freed (or would free).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Artifacts kept.
    pub kept: usize,
    /// Artifacts freed: (key, stage, bytes).
    pub freed: Vec<(String, String, u64)>,
    /// Leftover staging directories of dead runs.
    pub leftovers: Vec<PathBuf>,
    /// Bytes freed in all.
    pub bytes: u64,
    /// Nothing was deleted.
    pub dry_run: bool,
}

/// Keys reachable from refs and pins through input edges.
pub fn live_keys(store: &Store) -> Result<BTreeSet<String>> {
    let mut todo: Vec<String> = store.refs()?.into_iter().map(|(_, _, r)| r.key).collect();
    for (_, pin) in store.pins()? {
        todo.extend(pin.keys);
    }
    let mut live = BTreeSet::new();
    while let Some(k) = todo.pop() {
        if !live.insert(k.clone()) {
            continue;
        }
        if let Some(rec) = store.record(&k)? {
            todo.extend(rec.ingredients.inputs.into_iter().map(|i| i.key));
        }
    }
    Ok(live)
}

/// Frees what nothing reaches; with `dry_run`, only reports it.
pub fn gc(store: &Store, dry_run: bool) -> Result<GcReport> {
    let live = live_keys(store)?;
    let mut report = GcReport { dry_run, ..Default::default() };
    for key in store.keys()? {
        if live.contains(&key) {
            report.kept += 1;
            continue;
        }
        let stage = store.record(&key).ok().flatten().map(|r| r.stage).unwrap_or_else(|| "(incomplete)".into());
        let bytes = dir_size(&store.artifact_dir(&key));
        if !dry_run {
            // A run holding the key's lock may be publishing it right now: leave it be.
            let Some(_lock) = store.try_lock(&key)? else { continue };
            store.remove(&key)?;
        }
        report.bytes += bytes;
        report.freed.push((key, stage, bytes));
    }
    report.leftovers = store.leftovers()?;
    for path in &report.leftovers {
        report.bytes += dir_size(path);
        if !dry_run {
            std::fs::remove_dir_all(path).map_err(|e| crate::error::EngineError::io(path, e))?;
        }
    }
    Ok(report)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
