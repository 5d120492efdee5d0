//! Resolving a planned stage against the store: its ingredients, its key, and why it is stale.
//! Shared by `run`, `status`, `why` and `--dry-run`, so they always agree.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::filehash::StatCache;
use crate::key::{FileIngredient, Ingredients, InputIngredient};
use crate::plan::Plan;
use crate::reason::{self, Change};
use crate::record::ArtifactRecord;
use crate::store::Store;

/// A stage whose artifact is published: what downstream stages need of it.
#[derive(Clone, Debug)]
pub struct Built {
    /// Its record.
    pub record: ArtifactRecord,
    /// The root cause of its last change in this invocation, for downstream reasons.
    pub cause: Option<String>,
    /// Whether it ran in this invocation.
    pub ran: bool,
}

/// The plan, the store and the file-hash cache, together.
pub struct Resolver<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Its store.
    pub store: Store,
    /// Input-file hashes.
    pub stat: StatCache,
}

impl<'a> Resolver<'a> {
    /// Opens the plan's store.
    pub fn new(plan: &'a Plan) -> Result<Self> {
        let store = Store::open(&plan.store_dir)?;
        let stat = StatCache::load(store.stat_cache_file());
        Ok(Resolver { plan, store, stat })
    }

    /// The ingredients of stage `i`, given the built artifact of each upstream stage (by index).
    pub fn ingredients(
        &self,
        i: usize,
        built: &dyn Fn(usize) -> Option<Built>,
    ) -> Result<Ingredients> {
        let ps = &self.plan.stages[i];
        let mut inputs = Vec::new();
        for b in &ps.inputs {
            let up = built(b.stage).ok_or_else(|| EngineError::Stage {
                stage: ps.id.clone(),
                message: format!("input {} is not built", self.plan.stages[b.stage].id),
            })?;
            let out = up.record.outputs.get(b.output).ok_or_else(|| {
                EngineError::Store(format!(
                    "artifact {} has no output \"{}\"",
                    up.record.key, b.output
                ))
            })?;
            inputs.push(InputIngredient {
                slot: b.slot.to_string(),
                stage: self.plan.stages[b.stage].id.clone(),
                output: b.output.to_string(),
                kind: b.kind.to_string(),
                key: up.record.key.clone(),
                hash: out.hash.clone(),
            });
        }
        let mut files = Vec::new();
        for f in ps.stage.input_files(&self.plan.check) {
            let (hash, bytes) = self.stat.hash(&f.path).map_err(|e| EngineError::Stage {
                stage: ps.id.clone(),
                message: format!("params.{}: cannot read input file: {e}", f.param),
            })?;
            files.push(FileIngredient {
                param: f.param,
                path: f.path.display().to_string(),
                bytes,
                hash,
            });
        }
        Ok(Ingredients {
            kind: ps.kind.to_string(),
            version: ps.version,
            params: ps.stage.params(),
            inputs,
            files,
            env: ps.stage.env_facts(&self.plan.check),
            seed: self.plan.seed,
        })
    }

    /// Why stage `i` must run with `ingredients`/`key` (not in the store): compared with its last run.
    pub fn changes(
        &self,
        i: usize,
        now: &Ingredients,
        key: &str,
        cause_of: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Change> {
        let id = &self.plan.stages[i].id;
        let Some(prev) = self.store.read_ref(&self.plan.name, id) else {
            return vec![Change::Local("never run".into())];
        };
        if prev.key == key {
            return vec![Change::Local(format!(
                "artifact {} is no longer in the store",
                short(key)
            ))];
        }
        match self.store.record(&prev.key) {
            Ok(Some(rec)) => {
                let changes = reason::diff(&rec.ingredients, now, cause_of);
                if changes.is_empty() {
                    vec![Change::Local("cache key format changed".into())]
                } else {
                    changes
                }
            }
            _ => vec![Change::Local(format!(
                "changed since its last artifact {} (since removed)",
                short(&prev.key)
            ))],
        }
    }

    /// Why a stage found in the store is fresh.
    pub fn cached_reason(&self, i: usize, key: &str, upstream_ran: Option<&str>) -> String {
        let prev = self.store.read_ref(&self.plan.name, &self.plan.stages[i].id);
        match (prev, upstream_ran) {
            (Some(p), Some(up)) if p.key == key => {
                format!("early cutoff: {up} reran with identical output")
            }
            (Some(p), _) if p.key == key => "up to date".into(),
            _ => "found in store (built earlier with these exact inputs)".into(),
        }
    }
}

/// The first 12 hex digits of a key, as the summary shows it.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

/// Renders changes for the summary: `a; b; c`.
pub fn render(changes: &[Change]) -> String {
    changes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; ")
}

/// The upstream stages of `i` that ran in this invocation, by id.
pub fn upstream_ran(plan: &Plan, i: usize, built: &BTreeMap<usize, Built>) -> Option<String> {
    plan.upstream(i)
        .into_iter()
        .find(|u| built.get(u).is_some_and(|b| b.ran))
        .map(|u| plan.stages[u].id.clone())
}
