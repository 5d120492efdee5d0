//! Planning on the submit host: a stage whose inputs are built and whose key is in the store is
//! cached and never submitted; every other selected stage becomes one `sbatch` job, after the jobs
//! of its upstream stages (`afterok`). A job checks its key again when it starts, so a stage whose
//! inputs came out byte-identical is a cache hit there (early cutoff).

use std::collections::BTreeMap;

use super::{queue, record, sbatch};
use crate::error::{IoContext, Result};
use crate::exec::{modes, Mode, RunOptions};
use crate::executor::JobCommand;
use crate::report::{StageReport, StageStatus};
use crate::resolve::{self, Built, Resolver};
use crate::store::KeyLock;

/// A submitted stage.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    /// Job id.
    pub id: String,
    /// The stage's key, when its inputs were built at submission.
    pub key: Option<String>,
    /// Why it runs, as known at submission.
    pub reason: String,
}

/// What the submit host settled and what it submitted.
pub(crate) struct Launch {
    /// Reports of the stages settled here (cached, skipped, not submitted), by plan index.
    pub reports: Vec<Option<StageReport>>,
    /// The jobs, by plan index.
    pub jobs: BTreeMap<usize, Job>,
}

/// Resolves what can be resolved here and submits the rest; `holds` keeps the keys found cached
/// from gc until the caller is done.
pub(crate) fn launch(
    resolver: &Resolver<'_>,
    opts: &RunOptions,
    command: &JobCommand,
    holds: &mut Vec<KeyLock>,
) -> Result<Launch> {
    let plan = resolver.plan;
    let store = &resolver.store;
    let (modes, not_selected) = modes(plan, opts.until.as_deref(), opts.only.as_deref())?;
    let cwd = std::env::current_dir().at(".")?;
    let logs = store.root().join("logs");
    std::fs::create_dir_all(&logs).at(&logs)?;
    let mut built: BTreeMap<usize, Built> = BTreeMap::new();
    let mut out = Launch { reports: vec![None; plan.stages.len()], jobs: BTreeMap::new() };
    for (i, ps) in plan.stages.iter().enumerate() {
        let report = |status, reason: String, key| {
            Some(StageReport::new(&ps.id, ps.kind, status, reason, key))
        };
        if modes[i] == Mode::Skip {
            out.reports[i] = report(StageStatus::Skipped, not_selected.clone(), None);
            continue;
        }
        let ups = plan.upstream(i);
        if let Some(u) = ups.iter().find(|u| !built.contains_key(u) && !out.jobs.contains_key(u)) {
            let up = &plan.stages[*u].id;
            out.reports[i] = if modes[i] == Mode::Run && opts.only.is_some() {
                let why = format!("input {up} was not built: build it first (e.g. --until {up})");
                report(StageStatus::Failed, why, None)
            } else {
                report(StageStatus::Skipped, format!("input {up} was not built"), None)
            };
            continue;
        }
        let after: Vec<&str> =
            ups.iter().filter_map(|u| out.jobs.get(u)).map(|j| j.id.as_str()).collect();
        let forced = opts.force.contains(&ps.id);
        let (key, reason) = if after.is_empty() {
            let ingredients = match resolver.ingredients(i, &|u| built.get(&u).cloned()) {
                Ok(x) => x,
                Err(e) => {
                    out.reports[i] = report(StageStatus::Failed, e.to_string(), None);
                    continue;
                }
            };
            let key = ingredients.key();
            holds.push(store.hold(&key)?);
            match store.record(&key)? {
                Some(record) if !forced => {
                    store.write_ref(&plan.name, &ps.id, &key)?;
                    let why = resolver.cached_reason(i, &key, None);
                    out.reports[i] =
                        report(StageStatus::Cached, why, Some(key)).map(|r| r.recorded(&record));
                    built.insert(i, Built { record, cause: None, ran: false });
                    continue;
                }
                _ => {}
            }
            let why = if forced {
                "forced (--force)".to_string()
            } else {
                resolve::render(&resolver.changes(i, &ingredients, &key, &|_| None))
            };
            if modes[i] == Mode::Lookup {
                out.reports[i] = report(StageStatus::Skipped, format!("not built: {why}"), None);
                continue;
            }
            (Some(key), why)
        } else {
            let ids: Vec<&str> = ups
                .iter()
                .filter(|u| out.jobs.contains_key(u))
                .map(|u| plan.stages[*u].id.as_str())
                .collect();
            (None, format!("after {} (its key is known once they finish)", ids.join(", ")))
        };
        let options = sbatch::options(
            &format!("{}.{}", plan.name, ps.id),
            &record::job_log_pattern(store),
            &cwd,
            &ps.resources,
            &after.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        match queue::submit(&options, &sbatch::script(&(command.0)(&ps.id, forced))) {
            Ok(id) => {
                let sub = record::Submission {
                    job: id.clone(),
                    key: key.clone(),
                    submitted: crate::record::now_rfc3339(),
                };
                record::write_submission(store, &plan.name, &ps.id, &sub)?;
                out.jobs.insert(i, Job { id, key, reason });
            }
            Err(e) => out.reports[i] = report(StageStatus::Failed, e, key),
        }
    }
    Ok(out)
}
