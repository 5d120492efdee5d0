//! `status`, `why` and `run --dry-run`: what a run would do and why, without running anything.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::exec::{modes, Mode, RunOptions};
use crate::plan::Plan;
use crate::reason::{root_cause, Change};
use crate::report::{StageReport, StageStatus};
use crate::resolve::{self, Built, Resolver};

/// The state of every stage: fresh (in the store) or stale, with the reason.
/// A stage whose batch job is queued or running says so, with the job's id, state and node.
pub fn status(plan: &Plan) -> Result<Vec<StageReport>> {
    let mut reports = resolve_all(plan, &RunOptions::default(), false)?;
    crate::slurm::annotate(plan, &crate::store::Store::open(&plan.store_dir)?, &mut reports);
    Ok(reports)
}

/// What `run` with these options would do: cached, would-run or skipped, with reasons.
pub fn dry_run(plan: &Plan, opts: &RunOptions) -> Result<Vec<StageReport>> {
    resolve_all(plan, opts, true)
}

fn resolve_all(plan: &Plan, opts: &RunOptions, dry: bool) -> Result<Vec<StageReport>> {
    let (modes, not_selected) = modes(plan, opts.until.as_deref(), opts.only.as_deref())?;
    let resolver = Resolver::new(plan)?;
    let (fresh, stale) = if dry {
        (StageStatus::Cached, StageStatus::WouldRun)
    } else {
        (StageStatus::Fresh, StageStatus::Stale)
    };
    let mut built: BTreeMap<usize, Built> = BTreeMap::new();
    // Root causes of stages that will (or would) change.
    let mut causes: BTreeMap<usize, Option<String>> = BTreeMap::new();
    let mut reports = Vec::with_capacity(plan.stages.len());
    for (i, ps) in plan.stages.iter().enumerate() {
        let mut report =
            StageReport::new(&ps.id, ps.kind, StageStatus::Skipped, String::new(), None);
        if modes[i] == Mode::Skip {
            report.reason = not_selected.clone();
            reports.push(report);
            continue;
        }
        let pending: Vec<usize> =
            plan.upstream(i).into_iter().filter(|u| !built.contains_key(u)).collect();
        let forced = opts.force.contains(&ps.id);
        if !pending.is_empty() {
            let changes: Vec<Change> = pending
                .iter()
                .map(|u| Change::Input {
                    stage: plan.stages[*u].id.clone(),
                    cause: causes.get(u).cloned().flatten(),
                })
                .collect();
            let blocked = pending.iter().any(|u| !causes.contains_key(u));
            causes.insert(i, if blocked { None } else { root_cause(&ps.id, &changes) });
            if !blocked && modes[i] == Mode::Run {
                report.status = stale;
                report.reason = resolve::render(&changes);
            } else {
                let up = &plan.stages[pending[0]].id;
                report.reason = format!("input {up} is not built");
                if modes[i] == Mode::Run {
                    report.status = StageStatus::Failed;
                    causes.remove(&i);
                }
            }
            reports.push(report);
            continue;
        }
        let ingredients = resolver.ingredients(i, &|u| built.get(&u).cloned())?;
        let key = ingredients.key();
        report.key = Some(key.clone());
        if let (false, Some(record)) = (forced, resolver.store.record(&key)?) {
            report = report.recorded(&record);
            report.status = fresh;
            report.reason = resolver.cached_reason(i, &key, None);
            built.insert(i, Built { record, cause: None, ran: false });
        } else {
            let cause_of =
                |id: &str| plan.index(id).and_then(|u| causes.get(&u).cloned().flatten());
            let changes = if forced {
                vec![Change::Local("forced (--force)".into())]
            } else {
                resolver.changes(i, &ingredients, &key, &cause_of)
            };
            report.reason = resolve::render(&changes);
            if modes[i] == Mode::Run {
                report.status = stale;
                causes.insert(i, root_cause(&ps.id, &changes));
            } else {
                report.reason = format!("not built: {}", report.reason);
            }
        }
        reports.push(report);
    }
    resolver.stat.save()?;
    Ok(reports)
}
