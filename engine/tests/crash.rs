//! Processes that die or race: kill -9 during a stage then rerun, two concurrent runs of one store,
//! runs racing gc, and gc keeping what a pinned (registered) artifact needs.
//!
//! Child processes are this test binary re-run on an ignored test: `child_run` runs the manifest
//! named by `MEDALIGN_CHILD_MANIFEST` and prints the reports as JSON; `child_gc` collects garbage in
//! the store `MEDALIGN_CHILD_STORE` again and again until the file `MEDALIGN_CHILD_STOP` exists.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{by_id, s, statuses, Project};
use medalign_engine::{KindRegistry, RunOptions, StageStatus::*, Store};

const SLOW: &str = "
name: t
stages:
  - id: src
    kind: source
    params: {text: \"slow\\n\"}
  - id: slow
    kind: transform
    inputs: [src]
    params: {op: upper, steps: 40, step_ms: 50}
";

#[test]
#[ignore = "run as a child process by the other tests"]
fn child_run() {
    let manifest = std::env::var("MEDALIGN_CHILD_MANIFEST").expect("MEDALIGN_CHILD_MANIFEST");
    let mut registry = KindRegistry::new();
    medalign_engine::testkit::register(&mut registry);
    let plan = medalign_engine::load(manifest.as_ref(), &registry, &BTreeMap::new()).unwrap();
    let reports = medalign_engine::run(&plan, &registry, &RunOptions::default()).unwrap();
    println!("REPORTS {}", serde_json::to_string(&reports).unwrap());
}

#[test]
#[ignore = "run as a child process by the other tests"]
fn child_gc() {
    let store =
        Store::open(std::env::var("MEDALIGN_CHILD_STORE").expect("MEDALIGN_CHILD_STORE")).unwrap();
    let stop = PathBuf::from(std::env::var("MEDALIGN_CHILD_STOP").expect("MEDALIGN_CHILD_STOP"));
    let mut rounds = 0;
    while !stop.exists() {
        medalign_engine::gc(&store, false).unwrap();
        rounds += 1;
    }
    println!("ROUNDS {rounds}");
}

fn child(p: &Project) -> Command {
    child_of(&p.manifest())
}

fn child_of(manifest: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", "child_run", "--nocapture"])
        .env("MEDALIGN_CHILD_MANIFEST", manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

fn reports_of(out: std::process::Output) -> Vec<serde_json::Value> {
    let text = String::from_utf8(out.stdout).unwrap();
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("REPORTS "))
        .unwrap_or_else(|| panic!("no reports in {text}"));
    serde_json::from_str(line).unwrap()
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_during_a_stage_leaves_no_artifact_and_the_rerun_resumes() {
    let p = Project::new(SLOW);
    let store = p.store();
    let mut proc = child(&p).spawn().unwrap();
    let step_file = || -> Option<u32> {
        let work = std::fs::read_dir(store.root().join("work")).ok()?.next()?.ok()?.path();
        std::fs::read_to_string(work.join("step")).ok()?.trim().parse().ok()
    };
    wait_for("the slow stage to checkpoint step 5", || step_file().is_some_and(|s| s >= 5));
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    let reached = step_file().unwrap();
    assert!(reached < 40, "killed before the end");
    assert_eq!(store.keys().unwrap().len(), 1, "only src is published; no half artifact of slow");
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        1,
        "the dead run's staging dir is left"
    );

    let r = p.run();
    assert_eq!(statuses(&r), s(&[("src", Cached), ("slow", Ran)]));
    let resumed = by_id(&r, "slow").metrics["resumed_from"].as_u64().unwrap();
    assert!(resumed >= reached as u64, "resumed from checkpoint {resumed}, killed at {reached}");
    assert_eq!(p.text("slow"), "SLOW\n");
    assert_eq!(
        std::fs::read_dir(store.root().join("tmp")).unwrap().count(),
        0,
        "staging of the dead run removed"
    );
    assert_eq!(
        std::fs::read_dir(store.root().join("work")).unwrap().count(),
        0,
        "checkpoints removed once published"
    );
}

#[test]
fn two_concurrent_runs_build_each_key_once() {
    let p = Project::new(&SLOW.replace("steps: 40", "steps: 10"));
    let a = child(&p).spawn().unwrap();
    let b = child(&p).spawn().unwrap();
    let (ra, rb) =
        (reports_of(a.wait_with_output().unwrap()), reports_of(b.wait_with_output().unwrap()));
    let slow_statuses: Vec<&str> = [&ra, &rb]
        .iter()
        .map(|r| r.iter().find(|x| x["id"] == "slow").unwrap()["status"].as_str().unwrap())
        .collect();
    let mut sorted = slow_statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["cached", "ran"],
        "exactly one run computed the slow stage: {slow_statuses:?}"
    );
    let keys: Vec<&str> = [&ra, &rb]
        .iter()
        .map(|r| r.iter().find(|x| x["id"] == "slow").unwrap()["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(p.store().keys().unwrap().len(), 2);
    assert_eq!(p.text("slow"), "SLOW\n");
}

const SWITCHED: &str = "
name: t
stages:
  - id: src
    kind: source
    params: {text: \"a\\n\"}
  - id: up
    kind: transform
    inputs: [src]
    params: {op: upper}
  - id: both
    kind: join
    inputs: [src, up]
";

/// Runs switching a param back and forth, one after another, while gc loops in another process.
/// Each switch leaves the other variant's artifacts unreferenced, so gc frees them while the next
/// run of that variant may be finding them cached: a run must hold what it uses until it ends.
#[test]
fn runs_racing_gc_never_lose_what_they_use() {
    let p = Project::new(SWITCHED);
    p.write("b.yaml", &SWITCHED.replace("a\\n", "b\\n"));
    let manifests = [p.manifest(), p.path().join("b.yaml")];
    let store = p.store();
    let stop = p.path().join("stop");
    let gc = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_gc", "--nocapture"])
        .env("MEDALIGN_CHILD_STORE", store.root())
        .env("MEDALIGN_CHILD_STOP", &stop)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut problems = Vec::new();
    let mut runs = 0;
    let start = Instant::now();
    // At least 3 s of racing and at least 10 runs, however slow the machine is today.
    while runs < 10 || start.elapsed() < Duration::from_secs(3) {
        let out = child_of(&manifests[runs % 2]).stderr(Stdio::piped()).output().unwrap();
        runs += 1;
        if !out.status.success() {
            problems.push(format!(
                "run {runs} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        for r in &reports_of(out) {
            let (id, status, key) = (&r["id"], &r["status"], r["key"].as_str().unwrap_or_default());
            if status == "failed" {
                problems.push(format!("run {runs}: {id} failed: {}", r["reason"]));
            } else if (status == "cached" || status == "ran") && !store.contains(key) {
                // Its ref points to it, and nothing changed the refs since: gc must keep it.
                problems.push(format!("run {runs}: {id} {status} as {key}, which is gone"));
            }
        }
    }
    std::fs::write(&stop, "").unwrap();
    let gc = gc.wait_with_output().unwrap();
    assert!(gc.status.success(), "gc failed: {}", String::from_utf8_lossy(&gc.stderr));
    let rounds = String::from_utf8_lossy(&gc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("ROUNDS ").map(str::to_string));
    assert!(
        problems.is_empty(),
        "{} problems in {runs} runs (gc rounds: {rounds:?}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

const PINNED: &str = "
name: t
stages:
  - id: src
    kind: source
    params: {text: \"v1\"}
  - id: model
    kind: join
    inputs: [src]
    params: {pin: registered-model}
";

#[test]
fn gc_frees_unreachable_artifacts_but_keeps_pinned_lineage() {
    let p = Project::new(PINNED);
    let first: Vec<String> = p.run().into_iter().map(|r| r.key.unwrap()).collect();
    p.edit(&PINNED.replace("v1", "v2"));
    p.run();
    p.edit(&PINNED.replace("v1", "v3").replace("{pin: registered-model}", "{}"));
    let third: Vec<String> = p.run().into_iter().map(|r| r.key.unwrap()).collect();
    let store = p.store();
    assert_eq!(store.keys().unwrap().len(), 6);

    let report = medalign_engine::gc(&store, false).unwrap();
    // v1 and v2 models were pinned under one name: the latest pin (v2) wins; v1's pair is freed.
    assert_eq!(report.freed.len(), 2, "{report:#?}");
    let mut freed: Vec<&str> = report.freed.iter().map(|(k, _, _)| k.as_str()).collect();
    freed.sort();
    let mut want: Vec<&str> = first.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(freed, want);
    let left = store.keys().unwrap();
    assert_eq!(left.len(), 4);
    for k in &third {
        assert!(left.contains(k), "current manifest's artifacts kept");
    }
    let pinned = &store.pins().unwrap()[0].1.keys[0];
    let lineage = medalign_engine::lineage(&store, pinned).unwrap();
    assert!(lineage.present && lineage.inputs[0].from.present, "pinned model and its source kept");
    assert_eq!(lineage.inputs[0].from.params["text"], "v2");
}

const FAILING: &str = "
name: t
stages:
  - id: src
    kind: source
    params: {text: \"a\\n\"}
  - id: up
    kind: transform
    inputs: [src]
    params: {op: upper, fail: boom}
";

#[test]
fn gc_frees_the_work_dirs_of_unreached_keys_unless_in_use() {
    let p = Project::new(FAILING);
    let failed = by_id(&p.run(), "up").key.clone().unwrap();
    p.edit(&FAILING.replace(", fail: boom", ""));
    let live = by_id(&p.run(), "up").key.clone().unwrap();
    let store = p.store();
    let work = |key: &str| store.root().join("work").join(key);
    assert!(work(&failed).is_dir(), "a failed stage leaves its (empty) work dir");
    let checkpoint = |key: &str, bytes: usize| {
        std::fs::write(store.work_dir(key).unwrap().join("step"), vec![b'7'; bytes]).unwrap()
    };
    let killed = "0".repeat(64); // a killed run of params changed since
    checkpoint(&killed, 1000);
    checkpoint(&live, 10); // a killed forced rerun of the current key: still referenced
    let running = "f".repeat(64); // a run in progress, writing checkpoints
    checkpoint(&running, 10);
    let hold = store.hold(&running).unwrap();
    let mut unreached = vec![(killed.clone(), 1000), (failed.clone(), 0)];
    unreached.sort();

    let dry = medalign_engine::gc(&store, true).unwrap();
    assert_eq!(dry.work, unreached, "{dry:#?}");
    assert_eq!(dry.bytes, 1000);
    assert!(work(&killed).is_dir() && work(&failed).is_dir(), "a dry run deletes nothing");

    let report = medalign_engine::gc(&store, false).unwrap();
    assert_eq!(report.work, unreached, "{report:#?}");
    assert_eq!((report.freed.len(), report.kept, report.bytes), (0, 2, 1000));
    assert!(!work(&killed).exists() && !work(&failed).exists());
    assert!(work(&live).join("step").is_file(), "the work dir of a reachable key is kept");
    assert!(work(&running).join("step").is_file(), "the work dir of a held key is kept");

    drop(hold);
    let report = medalign_engine::gc(&store, false).unwrap();
    assert_eq!(report.work, [(running.clone(), 10)]);
    assert!(!work(&running).exists());
}

#[test]
fn a_killed_runs_checkpoints_survive_gc_until_the_stage_moves_on() {
    let p = Project::new(FAILING);
    let attempted = by_id(&p.run(), "up").key.clone().unwrap();
    let store = p.store();
    let work = store.root().join("work").join(&attempted);
    // What a run killed mid-stage leaves: checkpoints in the work dir of the key it was building.
    std::fs::write(work.join("step"), "3").unwrap();
    let report = medalign_engine::gc(&store, false).unwrap();
    assert!(report.work.is_empty(), "the latest attempt can still resume: {report:#?}");
    assert!(work.join("step").is_file());

    p.edit(&FAILING.replace(", fail: boom", ", steps: 2"));
    p.run();
    let report = medalign_engine::gc(&store, false).unwrap();
    assert_eq!(
        report.work,
        [(attempted.clone(), 1)],
        "the params changed: nothing will resume from it"
    );
    assert!(!work.exists());
}
