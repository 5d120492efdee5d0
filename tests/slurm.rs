//! The test pipeline (the default one shrunk to the tiny model) with `--executor slurm` against a
//! real Slurm (`.ci/slurm-up` starts one on this machine): sacct shows one job per stage that ran,
//! keys and output hashes equal a local run's, `lineage` links each stage's log, and a rerun submits
//! nothing. Skipped with a note where no Slurm controller answers.

mod common;

use std::path::Path;
use std::process::Command;

use common::{medalign_in, shrunk};
use serde_json::Value;

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

/// `medalign <args>` in `dir` with the tiny model and the real data; stdout, or a panic with stderr.
fn medalign(dir: &Path, model: &Path, args: &[&str]) -> String {
    let out = medalign_in(dir, model, args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "medalign {args:?} failed (kept {}):\n{stderr}", dir.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The jobs whose name starts with `prefix` submitted since `since`: (id, state).
fn jobs_since(prefix: &str, since: &str) -> Vec<(String, String)> {
    let out = Command::new("sacct")
        .args(["-n", "-P", "-X", "-o", "JobID,JobName,State,Submit", "-S", since])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let submitted = f[3] >= since;
            (submitted && f[1].starts_with(prefix)).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .collect()
}

/// The next second, as sacct writes times.
fn now() -> String {
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = Command::new("date").arg("+%Y-%m-%dT%H:%M:%S").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Output name -> content hash of an artifact in `store`.
fn output_hashes(store: &Path, key: &str) -> Value {
    let path = store.join("artifacts").join(key).join("manifest.json");
    let record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let outputs = record["outputs"].as_object().unwrap();
    outputs.iter().map(|(name, o)| (name.clone(), o["hash"].clone())).collect()
}

#[test]
fn the_test_pipeline_under_slurm_equals_a_local_run_and_a_rerun_submits_nothing() {
    if !slurm_answers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-model");
    std::fs::create_dir(&model).unwrap();
    medalign_model::testing::write_tiny_model(&model).unwrap();
    // Both runs build the same store path (the eval report names its adapter's path): the local
    // run's store is moved aside before the Slurm run.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("medalign.yaml"), shrunk("beta: 0.1")).unwrap();
    let run = |extra: &[&str]| -> Vec<Value> {
        let args = [&["run", "medalign.yaml", "--json", "-q"], extra].concat();
        serde_json::from_str(&medalign(&work, &model, &args)).unwrap()
    };
    let here = run(&[]);
    let local = work.join("local-store");
    std::fs::rename(work.join(".medalign"), &local).unwrap();
    let since = now();
    let there = run(&["--executor", "slurm"]);

    assert!(there.iter().all(|r| r["status"] == "ran"), "{there:#?}");
    let mut submitted = jobs_since("medalign.", &since);
    submitted.sort();
    let mut ran: Vec<(String, String)> = there
        .iter()
        .map(|r| (r["job"]["id"].as_str().unwrap().to_string(), "COMPLETED".to_string()))
        .collect();
    ran.sort();
    assert_eq!(submitted, ran, "sacct: one completed job per stage that ran");
    for (a, b) in here.iter().zip(&there) {
        assert_eq!((&a["id"], &a["key"]), (&b["id"], &b["key"]), "the same keys as a local run");
        let key = a["key"].as_str().unwrap();
        // register's model copies the adapter with its run record (`adapter/_run/`, training
        // timings), which the output hash covers below the output's root: two local runs differ
        // there too.
        if a["id"] == "register" {
            continue;
        }
        let slurm = work.join(".medalign");
        assert_eq!(output_hashes(&local, key), output_hashes(&slurm, key), "{}", a["id"]);
    }
    let lineage = medalign(&work, &model, &["lineage", "eval", "-m", "medalign.yaml"]);
    assert!(lineage.contains("log: ") && lineage.contains("/logs/eval-"), "{lineage}");

    let since = now();
    let again = run(&["--executor", "slurm"]);
    assert!(again.iter().all(|r| r["status"] == "cached" && r["job"].is_null()), "{again:#?}");
    assert_eq!(jobs_since("medalign.", &since), [], "a rerun submits nothing");
}
