//! The main job, shrunk: `pipelines/medalign.yaml` on a tiny random model, a handful of rows of the
//! real data and a few steps, run by the real binary end to end (ingest -> dedupe -> sft -> generate
//! -> judge -> pair -> dpo -> eval, export -> register): wiring and caching, not quality. Then a rerun is fully cached, a forced sft that trains the same weights
//! leaves everything downstream cached, and editing the DPO beta reruns dpo, export, eval and
//! register only.

mod common;

use std::path::Path;
use std::process::Command;

use common::{medalign_in, root, shrunk};
use serde_json::Value;

/// Runs the binary; on failure, the error with stderr.
fn run(dir: &Path, model: &Path, extra: &[&str]) -> Result<Vec<Value>, String> {
    let args = [&["run", "medalign.yaml", "--json", "-q"], extra].concat();
    let out = medalign_in(dir, model, &args).output().unwrap();
    if !out.status.success() {
        return Err(format!("medalign run failed:\n{}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn statuses(reports: &[Value]) -> Vec<(String, String)> {
    reports
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn the_default_pipeline_runs_end_to_end_caches_and_reruns_only_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-model");
    std::fs::create_dir(&model).unwrap();
    medalign_model::testing::write_tiny_model(&model).unwrap();
    std::fs::write(dir.path().join("medalign.yaml"), shrunk("beta: 0.1")).unwrap();

    // A failed run keeps the directory (store, manifest, model) for a look, and says where.
    let or_keep = |r: Result<Vec<Value>, String>, dir: tempfile::TempDir| match r {
        Ok(v) => (v, dir),
        Err(e) => panic!("{e}\n(kept {})", dir.keep().display()),
    };
    let (first, dir) = or_keep(run(dir.path(), &model, &[]), dir);
    assert!(first.iter().all(|r| r["status"] == "ran"), "{:#?}", statuses(&first));
    let by_id = |id: &str| first.iter().find(|r| r["id"] == id).unwrap().clone();
    let ingest = by_id("ingest");
    assert_eq!(ingest["metrics"]["rows_in"], ingest["metrics"]["rows_out"]);
    // Pairs by rule: every harmful prompt the random model answers is a pair; the judge is compared.
    let pair = by_id("pair")["metrics"].clone();
    assert!(
        pair["rule_pairs"].as_u64().unwrap() >= 1 && pair["judge_compared"].as_u64().unwrap() >= 1,
        "{pair}"
    );
    assert_eq!(pair["prompts"].as_u64(), Some(20), "{pair}");
    // reference_pairs: false, so every pair is one the rules decide; the rest are already right, or
    // unpaired where no answer is one the rules accept (a prompt-only question the model refuses).
    assert_eq!(pair["rule_pairs"], pair["pairs"], "{pair}");
    assert_eq!(
        pair["pairs"].as_u64().unwrap()
            + pair["already_right"].as_u64().unwrap()
            + pair["unpaired"].as_u64().unwrap(),
        20,
        "{pair}"
    );
    // `unseen`: generate left out what sft trained on (its list in the adapter), then took its
    // limits from the rest.
    let generate = by_id("generate")["metrics"].clone();
    assert!(generate["prompts_seen_in_training"].as_u64().unwrap() >= 10, "{generate}");
    assert!(by_id("sft")["metrics"]["examples_unused"].as_u64().unwrap() > 1000);
    assert!(by_id("register")["metrics"].as_object().is_some());
    assert!(by_id("export")["metrics"]["gguf_q8_0_mb"].as_f64().unwrap() > 0.0);
    let eval = by_id("eval");
    let key = eval["key"].as_str().unwrap();
    let report = dir.path().join(".medalign/artifacts").join(key).join("report/report.md");
    let report = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("{}: {e}\n{eval:#}", report.display()));
    assert!(report.contains("| sft |") && report.contains("| dpo |"), "{report}");

    let (second, dir) = or_keep(run(dir.path(), &model, &[]), dir);
    assert!(second.iter().all(|r| r["status"] == "cached"), "{:#?}", statuses(&second));

    // Training is reproducible and its timings live in the run record, outside the adapter's hash.
    let (forced, dir) = or_keep(run(dir.path(), &model, &["--force", "sft"]), dir);
    let ran: Vec<String> = statuses(&forced)
        .into_iter()
        .filter(|(_, s)| s != "cached")
        .map(|(id, s)| format!("{id} {s}"))
        .collect();
    assert_eq!(ran, ["sft ran"], "{:#?}", statuses(&forced));

    std::fs::write(dir.path().join("medalign.yaml"), shrunk("beta: 0.2")).unwrap();
    let (third, dir) = or_keep(run(dir.path(), &model, &[]), dir);
    let ran: Vec<String> =
        statuses(&third).into_iter().filter(|(_, s)| s == "ran").map(|(id, _)| id).collect();
    assert_eq!(ran, ["dpo", "eval", "export", "register"]);
    let dpo = third.iter().find(|r| r["id"] == "dpo").unwrap();
    assert_eq!(dpo["reason"], "params.dpo.beta changed 0.1 -> 0.2");
    registered_models_resolve_everywhere(dir.path(), &model);
}

/// Runs the binary in `dir`; its stderr, or a panic with it.
fn medalign(dir: &Path, args: &[&str]) -> (String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_medalign")).args(args).current_dir(dir).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "medalign {args:?} failed:\n{stderr}");
    (stdout, stderr)
}

/// The two versions the default pipeline registered (beta 0.1, then 0.2) by registry name: from
/// `generate`, `bench eval` and an eval stage, which reruns when the alias it names moves.
fn registered_models_resolve_everywhere(dir: &Path, model: &Path) {
    let store = dir.join(".medalign");
    let store = store.to_str().unwrap();
    let (_, stderr) = medalign(
        dir,
        &[
            "generate",
            "--model",
            "medalign@latest",
            "--store",
            store,
            "--prompt",
            "Is ibuprofen an NSAID?",
            "--max-tokens",
            "4",
        ],
    );
    assert!(stderr.contains("loaded medalign:2"), "{stderr}");
    let data = root().join("data/real");
    let (mmlu, pubmedqa) =
        (data.join("mmlu_medical/val"), data.join("pubmedqa/test/pqal_test.json"));
    let (stdout, _) = medalign(
        dir,
        &[
            "bench",
            "eval",
            "--model",
            "medalign:1",
            "--store",
            store,
            "--mmlu",
            mmlu.to_str().unwrap(),
            "--pubmedqa",
            pubmedqa.to_str().unwrap(),
            "--limit",
            "2",
            "--json",
        ],
    );
    assert!(stdout.contains("questions_per_s"), "{stdout}");

    let manifest = format!(
        "name: registered\nstages:\n  - id: held_out\n    kind: ingest\n    params: {{sources: [{{path: {mmlu:?}, format: mmlu, split: test}}]}}\n  - id: eval\n    kind: eval\n    inputs: {{examples: [held_out]}}\n    params: {{base: {model:?}, candidate: medalign@staging, limit: 2}}\n",
        mmlu = mmlu.display().to_string(),
        model = model.display().to_string(),
    );
    std::fs::write(dir.join("registered.yaml"), manifest).unwrap();
    let eval_status = |stdout: &str| -> (String, String) {
        let reports: Vec<Value> = serde_json::from_str(stdout).unwrap();
        let eval = reports.iter().find(|r| r["id"] == "eval").unwrap();
        (eval["status"].as_str().unwrap().to_string(), eval["key"].as_str().unwrap().to_string())
    };
    let (first, key) = eval_status(&medalign(dir, &["run", "registered.yaml", "--json", "-q"]).0);
    assert_eq!(first, "ran");
    let rec: Value =
        serde_json::from_slice(&std::fs::read(store_artifact(&store, &key)).unwrap()).unwrap();
    assert!(
        rec.to_string().contains("medalign:2"),
        "the key names the version staging points at: {rec}"
    );
    assert_eq!(
        eval_status(&medalign(dir, &["run", "registered.yaml", "--json", "-q"]).0).0,
        "cached"
    );
    medalign(dir, &["models", "--store", store, "promote", "medalign:1", "staging"]);
    let (moved, moved_key) =
        eval_status(&medalign(dir, &["run", "registered.yaml", "--json", "-q"]).0);
    assert_eq!(moved, "ran", "staging moved to version 1");
    assert_ne!(moved_key, key);
}

fn store_artifact(store: &str, key: &str) -> std::path::PathBuf {
    Path::new(store).join("artifacts").join(key).join("manifest.json")
}
