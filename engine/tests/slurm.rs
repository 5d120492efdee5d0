//! The slurm executor against a real Slurm (`.ci/slurm-up` starts one on this machine): each stage
//! a job and independent ones at once, `--detach` then `status`, a job cancelled mid-stage that
//! leaves no half artifact and resumes when resubmitted, a failing job reported with its log and
//! its dependants skipped, and the lock of a dead job on another host taken over. Each test skips
//! with a note where no Slurm controller answers.
//!
//! Jobs run this test binary again on the ignored test `child_job`, for the stage in
//! `MEDALIGN_CHILD_STAGE` of the manifest in `MEDALIGN_CHILD_MANIFEST`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{by_id, s, statuses, Project};
use medalign_engine::{Executor, JobCommand, KindRegistry, RunOptions, StageStatus::*};

/// The tests share the cluster's CPUs: one at a time.
static CLUSTER: Mutex<()> = Mutex::new(());

#[test]
#[ignore = "run as a Slurm job by the other tests"]
fn child_job() {
    let manifest = std::env::var("MEDALIGN_CHILD_MANIFEST").expect("MEDALIGN_CHILD_MANIFEST");
    let stage = std::env::var("MEDALIGN_CHILD_STAGE").expect("MEDALIGN_CHILD_STAGE");
    let forced = std::env::var("MEDALIGN_CHILD_FORCE").is_ok_and(|f| f == "1");
    let mut registry = KindRegistry::new();
    medalign_engine::testkit::register(&mut registry);
    let plan = medalign_engine::load(manifest.as_ref(), &registry, &BTreeMap::new()).unwrap();
    let report = medalign_engine::run_job(&plan, &registry, &stage, forced).unwrap();
    if report.status == Failed {
        std::process::exit(1);
    }
}

/// Whether a Slurm controller answers here; says why not when it does not.
fn slurm_answers() -> bool {
    let ok = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !ok {
        eprintln!("note: skipped: no Slurm controller answers here (`.ci/slurm-up` starts one)");
    }
    ok
}

fn slurm_opts(p: &Project) -> RunOptions {
    let exe = std::env::current_exe().unwrap().display().to_string();
    let manifest = p.manifest().display().to_string();
    let command = move |id: &str, forced: bool| -> Vec<String> {
        [
            "env",
            &format!("MEDALIGN_CHILD_MANIFEST={manifest}"),
            &format!("MEDALIGN_CHILD_STAGE={id}"),
            &format!("MEDALIGN_CHILD_FORCE={}", u8::from(forced)),
            &exe,
            "--ignored",
            "--exact",
            "child_job",
            "--nocapture",
        ]
        .map(String::from)
        .to_vec()
    };
    RunOptions {
        executor: Some(Executor::Slurm),
        job_command: Some(JobCommand(Arc::new(command))),
        ..Default::default()
    }
}

fn job(r: &medalign_engine::StageReport) -> String {
    r.job.as_ref().unwrap_or_else(|| panic!("{} has no job: {r:?}", r.id)).id.clone()
}

/// sacct's `Start|End` of a job, as epoch seconds.
fn start_end(job: &str) -> (i64, i64) {
    let out = Command::new("sacct")
        .args(["-n", "-P", "-X", "--noconvert", "-o", "Start,End", "-j", job])
        .env("SLURM_TIME_FORMAT", "%s")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (a, b) = text.lines().next().and_then(|l| l.split_once('|')).expect("sacct knows the job");
    (a.parse().unwrap(), b.parse().unwrap())
}

fn wait_for(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const FORK: &str = "
name: fork
resources: {cpus: 1, mem: 200M, time: 10}
stages:
  - id: src
    kind: source
    params: {text: \"fork\\n\"}
  - id: a
    kind: transform
    inputs: [src]
    params: {op: upper, steps: 30, step_ms: 100}
  - id: b
    kind: transform
    inputs: [src]
    params: {op: lower, steps: 30, step_ms: 100}
    resources: {time: \"0:05:00\"}
  - id: both
    kind: join
    inputs: [a, b]
";

#[test]
fn each_stage_is_a_job_independent_ones_run_at_once_and_a_rerun_submits_nothing() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_answers() {
        return;
    }
    let p = Project::new(FORK);
    let r = p.run_with(slurm_opts(&p));
    assert_eq!(statuses(&r), s(&[("src", Ran), ("a", Ran), ("b", Ran), ("both", Ran)]), "{r:#?}");
    let (a, b) = (start_end(&job(by_id(&r, "a"))), start_end(&job(by_id(&r, "b"))));
    assert!(a.0 < b.1 && b.0 < a.1, "a {a:?} and b {b:?} overlap");
    assert_eq!(p.text("both"), "FORK\nfork\n");

    let local = Project::new(FORK);
    let l = local.run();
    for (x, y) in r.iter().zip(&l) {
        assert_eq!((&x.id, &x.key), (&y.id, &y.key), "the same keys as a local run");
    }
    let again = p.run_with(slurm_opts(&p));
    assert!(again.iter().all(|r| r.status == Cached && r.job.is_none()), "{again:#?}");
}

#[test]
fn a_detached_run_shows_in_status_until_its_jobs_are_done() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_answers() {
        return;
    }
    let p = Project::new(FORK);
    let r = p.run_with(RunOptions { detach: true, ..slurm_opts(&p) });
    assert!(r.iter().all(|r| r.status == Submitted), "{r:#?}");
    let queued = p.status();
    let shown = by_id(&queued, "both").job.as_ref().map(|j| j.state.clone());
    assert!(matches!(shown.as_deref(), Some("PENDING" | "RUNNING")), "{queued:#?}");
    assert!(by_id(&queued, "both").reason.starts_with(&format!("job {} ", job(by_id(&r, "both")))));
    // Built, and once their jobs have left the queue no longer shown with a job.
    wait_for("the jobs to finish", 120, || {
        p.status().iter().all(|r| r.status == Fresh && r.job.is_none())
    });
}

const SLOW: &str = "
name: slow
resources: {cpus: 1}
stages:
  - id: src
    kind: source
    params: {text: \"slow\\n\"}
  - id: slow
    kind: transform
    inputs: [src]
    params: {op: upper, steps: 60, step_ms: 100}
";

#[test]
fn a_job_cancelled_mid_stage_leaves_no_half_artifact_and_resumes_when_resubmitted() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_answers() {
        return;
    }
    let p = Project::new(SLOW);
    let store = p.store();
    let r = p.run_with(RunOptions { detach: true, ..slurm_opts(&p) });
    let step = || -> Option<u32> {
        let work = std::fs::read_dir(store.root().join("work")).ok()?.next()?.ok()?.path();
        std::fs::read_to_string(work.join("step")).ok()?.trim().parse().ok()
    };
    wait_for("the slow stage to checkpoint step 5", 120, || step().is_some_and(|s| s >= 5));
    let slow = job(by_id(&r, "slow"));
    Command::new("scancel").arg(&slow).status().unwrap();
    wait_for("the job to leave the queue", 60, || {
        let out = Command::new("squeue").args(["-h", "-j", &slow]).output().unwrap();
        out.stdout.is_empty()
    });
    let reached = step().unwrap();
    assert!(reached < 60, "cancelled before the end");
    assert_eq!(store.keys().unwrap().len(), 1, "only src is published; no half artifact of slow");
    assert!(store.read_ref("slow", "slow").is_none());

    let r = p.run_with(slurm_opts(&p));
    assert_eq!(statuses(&r), s(&[("src", Cached), ("slow", Ran)]), "{r:#?}");
    let resumed = by_id(&r, "slow").metrics["resumed_from"].as_u64().unwrap();
    assert!(resumed >= reached as u64, "resumed from checkpoint {resumed}, cancelled at {reached}");
    assert_eq!(p.text("slow"), "SLOW\n");
}

const FAILING: &str = "
name: failing
stages:
  - id: src
    kind: source
    params: {text: \"x\"}
  - id: bad
    kind: transform
    inputs: [src]
    params: {fail: \"the GPU caught fire\"}
  - id: after
    kind: transform
    inputs: [bad]
  - id: fine
    kind: transform
    inputs: [src]
";

#[test]
fn a_failing_job_is_reported_with_its_log_and_its_dependants_skipped() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_answers() {
        return;
    }
    let p = Project::new(FAILING);
    let r = p.run_with(slurm_opts(&p));
    assert_eq!(
        statuses(&r),
        s(&[("src", Ran), ("bad", Failed), ("after", Skipped), ("fine", Ran)]),
        "{r:#?}"
    );
    let bad = by_id(&r, "bad");
    let log = bad.job.as_ref().and_then(|j| j.log.clone()).expect("the failed job's log");
    assert!(bad.reason.contains("the GPU caught fire"), "{}", bad.reason);
    assert!(bad.reason.contains(&format!("job {}", job(bad))) && bad.reason.contains(&log));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("the GPU caught fire"), "the log has the stage's error: {text}");
    assert_eq!(by_id(&r, "after").reason, "input bad failed");

    // Fixed, a rerun submits only what is missing.
    p.edit(&FAILING.replace("params: {fail: \"the GPU caught fire\"}", "params: {op: upper}"));
    let r = p.run_with(slurm_opts(&p));
    assert_eq!(
        statuses(&r),
        s(&[("src", Cached), ("bad", Ran), ("after", Ran), ("fine", Cached)]),
        "{r:#?}"
    );
}

#[test]
fn the_lock_of_a_job_on_another_host_is_kept_while_it_runs_and_taken_over_once_it_ended() {
    let _cluster = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if !slurm_answers() {
        return;
    }
    let p =
        Project::new("name: one\nstages:\n  - id: src\n    kind: source\n    params: {text: x}\n");
    let key = p.status()[0].key.clone().unwrap();
    let sleeper = |cmd: &str| -> String {
        let out = Command::new("sbatch")
            .args(["--parsable", "-o", "/dev/null", "--wrap", cmd])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let owner = p.store().root().join("locks").join(format!("{key}.owner"));
    let elsewhere = |job: &str| {
        let o = format!(r#"{{"host":"elsewhere","pid":1,"job":"{job}"}}"#);
        std::fs::write(&owner, o).unwrap();
    };

    // The owner's job still runs: the stage waits for it.
    let running = sleeper("sleep 300");
    elsewhere(&running);
    let r = p.run_with(RunOptions { detach: true, ..slurm_opts(&p) });
    let waiting = job(&r[0]);
    wait_for("the job to start", 60, || {
        let out = Command::new("squeue").args(["-h", "-o", "%T", "-j", &waiting]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "RUNNING"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!p.store().contains(&key), "built while another host's live job held the key");

    // Its job ends: the lock is taken over and the stage built.
    Command::new("scancel").arg(&running).status().unwrap();
    wait_for("the stage to be built", 60, || p.store().contains(&key));
    assert!(!owner.exists(), "the lock is released");
}
