//! Running a plan: stages in dependency order, independent ones in parallel, each either found in
//! the store by its key or run, checked and published under a per-key lock. Each key a stage looks
//! up is held ([`crate::Store::hold`]) from before the lookup to the end of the run, so gc frees
//! nothing the run has found or built while later stages may still read it.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::Instant;

use crate::error::{EngineError, Result};
use crate::executor::{Executor, JobCommand};
use crate::kind::KindRegistry;
use crate::plan::Plan;
use crate::progress::{ProgressMode, RunProgress};
use crate::record::{hash_output, now_rfc3339, ArtifactRecord, RECORD_FORMAT};
use crate::report::{StageReport, StageStatus};
use crate::resolve::{self, Built, Resolver};
use crate::run_context::{InputArtifact, RunContext};
use crate::store::{KeyLock, Pin};

/// What `run` should do.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Run this stage and what it needs, nothing downstream.
    pub until: Option<String>,
    /// Run only this stage; its inputs must already be built.
    pub only: Option<String>,
    /// Run these stages even when cached.
    pub force: Vec<String>,
    /// At most this many stages at once.
    pub jobs: usize,
    /// How to show progress.
    pub progress: ProgressMode,
    /// The executor, overriding the manifest's `executor:`.
    pub executor: Option<Executor>,
    /// Return once the jobs are submitted (batch executors).
    pub detach: bool,
    /// How a batch job runs one stage (batch executors need it).
    pub job_command: Option<JobCommand>,
    /// The file this process's output goes to (a batch job's log): when a stage builds, it is
    /// linked as `<store>/logs/<stage>-<key>.log` beside the artifact.
    pub log: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            until: None,
            only: None,
            force: Vec::new(),
            jobs: default_jobs(),
            progress: ProgressMode::Silent,
            executor: None,
            detach: false,
            job_command: None,
            log: None,
        }
    }
}

/// Stages run at once by default: the machine's cores (stages parallelize inside too).
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// What a stage does in this invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Selected: run it unless cached.
    Run,
    /// Needed by a selected stage but not selected (`--only`): use it only if cached.
    Lookup,
    /// Not needed.
    Skip,
}

/// Which stages `--until`/`--only` select, and the reason shown for the others.
pub(crate) fn modes(
    plan: &Plan,
    until: Option<&str>,
    only: Option<&str>,
) -> Result<(Vec<Mode>, String)> {
    let n = plan.stages.len();
    if let Some(id) = only {
        let i = plan.require(id)?;
        let mut m = vec![Mode::Skip; n];
        for (j, keep) in plan.ancestors_and_self(i).into_iter().enumerate() {
            if keep {
                m[j] = Mode::Lookup;
            }
        }
        m[i] = Mode::Run;
        return Ok((m, format!("not selected (--only {id})")));
    }
    if let Some(id) = until {
        let i = plan.require(id)?;
        let m = plan
            .ancestors_and_self(i)
            .into_iter()
            .map(|k| if k { Mode::Run } else { Mode::Skip })
            .collect();
        return Ok((m, format!("not selected (--until {id})")));
    }
    Ok((vec![Mode::Run; n], String::new()))
}

enum Outcome {
    Built(Built, StageReport),
    NotBuilt(StageReport),
}

/// Runs the plan in this process; one report per stage, in plan order. Failed stages are reports,
/// not errors.
pub(crate) fn run_local(
    plan: &Plan,
    registry: &KindRegistry,
    opts: &RunOptions,
) -> Result<Vec<StageReport>> {
    for id in &opts.force {
        plan.require(id)?;
    }
    let (modes, not_selected) = modes(plan, opts.until.as_deref(), opts.only.as_deref())?;
    let resolver = Resolver::new(plan)?;
    let progress = RunProgress::new(opts.progress);
    let n = plan.stages.len();
    let built: Mutex<BTreeMap<usize, Built>> = Mutex::new(BTreeMap::new());
    let holds: Mutex<Vec<KeyLock>> = Mutex::new(Vec::new());
    let mut reports: Vec<Option<StageReport>> = vec![None; n];
    let mut waiting: Vec<usize> = (0..n).map(|i| plan.upstream(i).len()).collect();
    let downstream: Vec<Vec<usize>> =
        (0..n).map(|i| (0..n).filter(|&j| plan.upstream(j).contains(&i)).collect()).collect();
    let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let jobs = opts.jobs.max(1);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Outcome)>();
        let mut running = 0;
        loop {
            while running < jobs {
                let Some(i) = ready.pop_front() else { break };
                let tx = tx.clone();
                let (resolver, built, holds, progress, modes, not_selected) =
                    (&resolver, &built, &holds, &progress, &modes, &not_selected);
                scope.spawn(move || {
                    let out = stage(
                        resolver,
                        registry,
                        progress,
                        i,
                        modes[i],
                        not_selected,
                        built,
                        holds,
                        opts,
                    );
                    let _ = tx.send((i, out));
                });
                running += 1;
            }
            if running == 0 {
                break;
            }
            let (i, out) = rx.recv().expect("a worker reports");
            running -= 1;
            reports[i] = Some(match out {
                Outcome::Built(b, r) => {
                    built.lock().unwrap().insert(i, b);
                    r
                }
                Outcome::NotBuilt(r) => r,
            });
            for &j in &downstream[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.push_back(j);
                }
            }
        }
    });
    resolver.stat.save()?;
    Ok(reports.into_iter().map(|r| r.expect("every stage reported")).collect())
}

#[allow(clippy::too_many_arguments)]
fn stage(
    resolver: &Resolver<'_>,
    registry: &KindRegistry,
    progress: &RunProgress,
    i: usize,
    mode: Mode,
    not_selected: &str,
    built: &Mutex<BTreeMap<usize, Built>>,
    holds: &Mutex<Vec<KeyLock>>,
    opts: &RunOptions,
) -> Outcome {
    let plan = resolver.plan;
    let ps = &plan.stages[i];
    let report = |status, reason: String, key: Option<String>| {
        StageReport::new(&ps.id, ps.kind, status, reason, key)
    };
    if mode == Mode::Skip {
        return Outcome::NotBuilt(report(StageStatus::Skipped, not_selected.to_string(), None));
    }
    let snapshot = built.lock().unwrap().clone();
    if let Some(up) = plan.upstream(i).into_iter().find(|u| !snapshot.contains_key(u)) {
        let why = format!("input {} was not built", plan.stages[up].id);
        let status = if mode == Mode::Run && opts.only.is_some() {
            StageStatus::Failed
        } else {
            StageStatus::Skipped
        };
        let why = if status == StageStatus::Failed {
            format!("{why}: build it first (e.g. --until {})", plan.stages[up].id)
        } else {
            why
        };
        return Outcome::NotBuilt(report(status, why, None));
    }
    let ingredients = match resolver.ingredients(i, &|u| snapshot.get(&u).cloned()) {
        Ok(x) => x,
        Err(e) => return Outcome::NotBuilt(report(StageStatus::Failed, e.to_string(), None)),
    };
    let key = ingredients.key();
    let forced = opts.force.contains(&ps.id);
    let store = &resolver.store;
    match store.hold(&key) {
        Ok(hold) => holds.lock().unwrap().push(hold),
        Err(e) => return Outcome::NotBuilt(report(StageStatus::Failed, e.to_string(), Some(key))),
    }
    let up_ran = resolve::upstream_ran(plan, i, &snapshot);
    if !forced {
        if let Some(out) = cached(resolver, i, &key, up_ran.as_deref(), &report) {
            return out;
        }
    }
    let cause_of =
        |id: &str| plan.index(id).and_then(|u| snapshot.get(&u)).and_then(|b| b.cause.clone());
    let changes = resolver.changes(i, &ingredients, &key, &cause_of);
    if mode == Mode::Lookup {
        return Outcome::NotBuilt(report(
            StageStatus::Skipped,
            format!("not built: {}", resolve::render(&changes)),
            None,
        ));
    }
    let (reason, cause) = if forced {
        ("forced (--force)".to_string(), Some(format!("{} forced", ps.id)))
    } else {
        (resolve::render(&changes), crate::reason::root_cause(&ps.id, &changes))
    };
    let sp = progress.stage(&ps.id, ps.kind);
    let lock = store.lock(&key, |who| {
        sp.set_message(format!("waiting for another medalign run ({who}) building this key"))
    });
    let clock = Instant::now();
    let result = lock.and_then(|_lock| {
        if !forced {
            if let Some(out) = cached(resolver, i, &key, up_ran.as_deref(), &report) {
                return Ok(Err(out));
            }
        }
        store.mark_building(&plan.name, &ps.id, &key)?;
        if let Some(log) = &opts.log {
            crate::logs::link(store, log, &ps.id, &key)?;
        }
        execute(resolver, registry, i, &key, ingredients, &snapshot, &sp).map(Ok)
    });
    match result {
        Ok(Ok((record, pins))) => {
            let r = report(StageStatus::Ran, reason, Some(key.clone())).recorded(&record);
            sp.finish(&format!("ran in {:.1}s", record.seconds));
            for (name, note) in pins {
                if let Err(e) = store.pin(&name, &Pin { keys: vec![key.clone()], note }) {
                    return Outcome::NotBuilt(report(
                        StageStatus::Failed,
                        e.to_string(),
                        Some(key),
                    ));
                }
            }
            Outcome::Built(Built { record, cause, ran: true }, r)
        }
        Ok(Err(cached)) => {
            sp.finish("built by a concurrent run");
            cached
        }
        Err(e) => {
            sp.finish("failed");
            // The summary names the stage already: keep only what it said.
            let why = match e {
                EngineError::Stage { message, .. } => message,
                e => e.to_string(),
            };
            let mut r = report(StageStatus::Failed, crate::redact::redact(&why), Some(key));
            r.seconds = clock.elapsed().as_secs_f64();
            Outcome::NotBuilt(r)
        }
    }
}

/// The stage's artifact if the store has it (and the ref updated to it).
fn cached(
    resolver: &Resolver<'_>,
    i: usize,
    key: &str,
    up_ran: Option<&str>,
    report: &dyn Fn(StageStatus, String, Option<String>) -> StageReport,
) -> Option<Outcome> {
    let record = resolver.store.record(key).ok().flatten()?;
    let reason = resolver.cached_reason(i, key, up_ran);
    let plan = resolver.plan;
    if let Err(e) = resolver.store.write_ref(&plan.name, &plan.stages[i].id, key) {
        return Some(Outcome::NotBuilt(report(
            StageStatus::Failed,
            e.to_string(),
            Some(key.to_string()),
        )));
    }
    let r = report(StageStatus::Cached, reason, Some(key.to_string())).recorded(&record);
    Some(Outcome::Built(Built { record, cause: None, ran: false }, r))
}

/// Runs one stage into a staging directory, checks and hashes its outputs, publishes, updates the ref.
fn execute(
    resolver: &Resolver<'_>,
    registry: &KindRegistry,
    i: usize,
    key: &str,
    ingredients: crate::key::Ingredients,
    built: &BTreeMap<usize, Built>,
    sp: &crate::progress::StageProgress,
) -> Result<(ArtifactRecord, Vec<(String, String)>)> {
    let plan = resolver.plan;
    let store = &resolver.store;
    let ps = &plan.stages[i];
    let staging = store.staging(key)?;
    let mut inputs: BTreeMap<&'static str, Vec<InputArtifact>> = BTreeMap::new();
    for b in &ps.inputs {
        let up = &built[&b.stage];
        inputs.entry(b.slot).or_default().push(InputArtifact {
            stage: plan.stages[b.stage].id.clone(),
            output: b.output.to_string(),
            kind: b.kind.to_string(),
            key: up.record.key.clone(),
            dir: store.artifact_dir(&up.record.key).join(b.output),
        });
    }
    let mut outputs = BTreeMap::new();
    for o in ps.outputs {
        let d = staging.join(o.name);
        std::fs::create_dir_all(&d).map_err(|e| EngineError::io(&d, e))?;
        outputs.insert(o.name, d);
    }
    let mut cx = RunContext {
        stage_id: &ps.id,
        key: Some(key.to_string()),
        check: &plan.check,
        inputs,
        outputs,
        work_dir: store.work_dir(key)?,
        store_dir: store.root().to_path_buf(),
        seed: plan.seed,
        metrics: BTreeMap::new(),
        warnings: Vec::new(),
        pins: Vec::new(),
        progress: sp,
    };
    let started = now_rfc3339();
    let clock = Instant::now();
    let fail = |message: String| {
        let _ = std::fs::remove_dir_all(&staging);
        EngineError::Stage { stage: ps.id.clone(), message }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ps.stage.run(&mut cx))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            return Err(fail(format!("panicked: {}", msg.unwrap_or_default())));
        }
    }
    let seconds = clock.elapsed().as_secs_f64();
    let mut records = BTreeMap::new();
    for o in ps.outputs {
        let dir = staging.join(o.name);
        if let Some(schema) = registry.artifact_kind(o.kind).and_then(|k| k.schema_json) {
            let table = dir.join(crate::kind::TABLE_FILE);
            if !table.is_file() {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(EngineError::Output {
                    stage: ps.id.clone(),
                    output: o.name.to_string(),
                    message: format!(
                        "kind \"{}\" is a table but the stage wrote no {}",
                        o.kind,
                        crate::kind::TABLE_FILE
                    ),
                });
            }
            if let Err(message) = crate::schema_check::check_table_schema(&table, schema) {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(EngineError::Output {
                    stage: ps.id.clone(),
                    output: o.name.to_string(),
                    message,
                });
            }
        }
        records.insert(o.name.to_string(), hash_output(&dir, o.kind)?);
    }
    let record = ArtifactRecord {
        format: RECORD_FORMAT.to_string(),
        key: key.to_string(),
        pipeline: plan.name.clone(),
        stage: ps.id.clone(),
        ingredients,
        outputs: records,
        metrics: std::mem::take(&mut cx.metrics),
        warnings: std::mem::take(&mut cx.warnings),
        started,
        finished: now_rfc3339(),
        seconds,
        tool_version: format!("medalign-engine {}", env!("CARGO_PKG_VERSION")),
        host: crate::record::host(),
    };
    let pins = std::mem::take(&mut cx.pins);
    store.publish(&staging, &record)?;
    store.write_ref(&plan.name, &ps.id, key)?;
    Ok((record, pins))
}
