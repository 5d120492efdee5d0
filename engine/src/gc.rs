//! Garbage collection: frees artifacts that no manifest ref and no pin (registered model) reaches
//! through lineage, the work directories (checkpoints) of such keys unless a stage's latest attempt
//! may still resume from them, and staging directories left by dead processes. A key some run
//! holds ([`Store::hold`]) or builds is left be.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::store::Store;

/// Keys locked at once before reachability is checked again (each lock is two open files).
const BATCH: usize = 64;

/// What gc freed (or would free).
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Artifacts kept.
    pub kept: usize,
    /// Artifacts freed: (key, stage, bytes).
    pub freed: Vec<(String, String, u64)>,
    /// Work directories freed (checkpoints of killed runs, empty ones of failed runs): (key, bytes).
    pub work: Vec<(String, u64)>,
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
///
/// A key is freed only under both its locks, and only if it is still unreached once they are held:
/// a run holds each key it uses until it ends, so it may have pointed a ref at the key just before.
pub fn gc(store: &Store, dry_run: bool) -> Result<GcReport> {
    let contents = Contents {
        published: store.keys()?.into_iter().collect(),
        work: store.work_dirs()?.into_iter().collect(),
    };
    let live = live_keys(store)?;
    // The checkpoints of the key a stage last started (a killed run) are kept until the stage
    // moves on to another key; a failed stage's empty work dir is not worth keeping.
    let resumable: BTreeSet<String> = store
        .building()?
        .into_iter()
        .filter(|k| contents.work.get(k).is_some_and(|d| dir_size(d) > 0))
        .collect();
    let mut unreached: Vec<&String> = contents
        .published
        .iter()
        .chain(contents.work.keys().filter(|k| !resumable.contains(*k)))
        .filter(|k| !live.contains(*k))
        .collect();
    unreached.sort();
    unreached.dedup();
    let mut report = GcReport { dry_run, ..Default::default() };
    if dry_run {
        for key in unreached {
            if !store.in_use(key)? {
                contents.free(store, key, &mut report)?;
            }
        }
    } else {
        for batch in unreached.chunks(BATCH) {
            free_batch(store, &contents, batch, &mut report)?;
        }
    }
    report.kept = contents.published.len() - report.freed.len();
    report.leftovers = store.leftovers()?;
    for path in &report.leftovers {
        report.bytes += dir_size(path);
        if !dry_run {
            match std::fs::remove_dir_all(path) {
                // A run of the same key clears what killed runs of it left, under its lock.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EngineError::io(path, e))
                }
                _ => {}
            }
        }
    }
    Ok(report)
}

/// Frees the keys of `batch` that no run holds or builds, under their locks, if still unreached then.
fn free_batch(
    store: &Store,
    contents: &Contents,
    batch: &[&String],
    report: &mut GcReport,
) -> Result<()> {
    let mut locked = Vec::new();
    for &key in batch {
        if let Some(locks) = store.try_lock(key)? {
            locked.push((key, locks));
        }
    }
    if locked.is_empty() {
        return Ok(());
    }
    let live = live_keys(store)?;
    for (key, _locks) in locked.into_iter().filter(|(k, _)| !live.contains(*k)) {
        contents.free(store, key, report)?;
    }
    Ok(())
}

/// What the store held when gc started: published keys and work directories.
struct Contents {
    published: BTreeSet<String>,
    work: BTreeMap<String, PathBuf>,
}

impl Contents {
    /// Frees the artifact and the work directory of `key` (call under its locks); a dry run only
    /// reports them.
    fn free(&self, store: &Store, key: &str, report: &mut GcReport) -> Result<()> {
        if self.published.contains(key) {
            let stage = store
                .record(key)
                .ok()
                .flatten()
                .map(|r| r.stage)
                .unwrap_or_else(|| "(incomplete)".into());
            let bytes = dir_size(&store.artifact_dir(key));
            if !report.dry_run {
                store.remove(key)?;
            }
            report.bytes += bytes;
            report.freed.push((key.to_string(), stage, bytes));
        }
        if let Some(dir) = self.work.get(key) {
            let bytes = dir_size(dir);
            if !report.dry_run {
                std::fs::remove_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
            }
            report.bytes += bytes;
            report.work.push((key.to_string(), bytes));
        }
        Ok(())
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
