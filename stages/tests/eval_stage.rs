//! The `eval` stage end to end on the real SmolLM2-135M-Instruct (skipped, with a note, when it is
//! not cached): sample benchmark, safety and medication files in, predictions, metrics with
//! intervals and deltas, and the report out. Also the stage's param checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use medalign_engine::{
    CheckContext, InputArtifact, KindRegistry, RunContext, StageConfig, StageProgress,
};
use medalign_model::fetch::KnownModel;
use medalign_stages::eval::{report_table, EvalConfig};
use medalign_stages::ingest::IngestConfig;
use medalign_stages::kinds::eval_metrics::read_eval_metrics as read_metrics;
use medalign_stages::kinds::examples::write_examples;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn examples_input(dir: &Path, name: &str, sources: serde_json::Value) -> InputArtifact {
    let cfg: IngestConfig =
        serde_json::from_value(serde_json::json!({ "sources": sources })).unwrap();
    let rows = cfg.ingest(|p| fixtures().join(p)).unwrap().examples;
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    write_examples(&out.join("data.parquet"), &rows).unwrap();
    InputArtifact {
        stage: name.into(),
        output: "examples".into(),
        kind: "examples".into(),
        key: name.into(),
        dir: out,
    }
}

fn config(yaml: &str) -> EvalConfig {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn params_are_checked() {
    let cx = CheckContext::new(fixtures());
    let cfg = config("base: models/missing.gguf\nbatch_tokens: 4\nmedication_safety: {path: nope.json}\nreply_tokens: 0\n");
    let errors: Vec<String> =
        cfg.check(&cx).into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert!(errors[0].starts_with("base: ") && errors[0].ends_with("missing.gguf does not exist"));
    assert!(errors[1].starts_with("medication_safety.path: "));
    assert_eq!(errors[2], "batch_tokens: expected at least 16, got 4");
    assert_eq!(errors[3], "reply_tokens: expected at least 1");
    assert!(config("{}").check(&cx).is_empty());
    let judge = config("judge: {name: '', llm: {backend: openai, base_url: 'http://127.0.0.1:9/v1', model: m}, mode: distribution}\n");
    let errors: Vec<String> =
        judge.check(&cx).into_iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
    assert_eq!(
        errors,
        ["judge.name: give the judge a name", "judge.mode: mode distribution needs backend local"]
    );
    let errors: Vec<String> = config("refusals: judge\n")
        .check(&cx)
        .into_iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect();
    assert_eq!(errors, ["refusals: `judge` needs a `judge` to be configured"]);
    let mut reg = KindRegistry::new();
    medalign_stages::register(&mut reg);
    let kind = reg.kind("eval").expect("eval is registered");
    assert_eq!(kind.outputs()[0].kind, "eval_report");
    for slot in kind.inputs().iter().chain([]) {
        for k in slot.kinds {
            assert!(
                reg.artifact_kind(k).is_some(),
                "slot {} takes unregistered kind {k}",
                slot.name
            );
        }
    }
}

#[test]
fn eval_runs_end_to_end_on_smollm2() {
    if !KnownModel::by_name("smollm2-135m-instruct").unwrap().cached_path().is_file() {
        eprintln!("note: skipped, smollm2-135m-instruct is not cached");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let eval = examples_input(
        dir.path(),
        "eval_sets",
        serde_json::json!([
            { "path": "mmlu/anatomy_val.csv", "format": "mmlu" },
            { "path": "pubmedqa.json", "format": "pubmedqa" },
            { "path": "med_safety_demonstrations_category_1.csv", "format": "medsafetybench" },
            { "path": "medicationqa.jsonl", "format": "jsonl", "name": "medicationqa", "task": "instruction",
              "fields": { "prompt": "Question", "response": "Answer" } },
        ]),
    );
    let shots = examples_input(
        dir.path(),
        "shots",
        serde_json::json!([{ "path": "mmlu/anatomy_dev.csv", "format": "mmlu" }]),
    );
    let cfg = config(
        "candidate: smollm2-135m-instruct\nprecision: quantized\nmode: both\nnum_fewshot: 1\n\
         reply_tokens: 24\nanswer_tokens: 8\nmedication_safety: {path: rxsafebench.json}\njudge: {name: local}\n",
    );
    let check = CheckContext::new(fixtures());
    assert!(cfg.check(&check).is_empty());
    let progress = StageProgress::hidden();
    let inputs = BTreeMap::from([("examples", vec![eval]), ("fewshot", vec![shots])]);
    let out = dir.path().join("out");
    let mut cx = RunContext::standalone(
        &check,
        &progress,
        &out,
        inputs,
        &["report", "metrics", "predictions"],
    )
    .unwrap();
    cfg.run(&mut cx).unwrap();

    let rows = read_metrics(&out.join("metrics/data.parquet")).unwrap();
    let find = |model: &str, task: &str, metric: &str| {
        rows.iter()
            .find(|r| r.model == model && r.task == task && r.metric == metric)
            .unwrap_or_else(|| panic!("no {model} {task} {metric}"))
    };
    assert_eq!(find("base", "mmlu_medical", "acc").n, 2);
    assert_eq!(find("base", "pubmedqa", "acc_norm").n, 2);
    assert_eq!(find("base", "rxsafebench", "safe_choice").n, 2);
    assert_eq!(find("base", "medsafetybench", "refusal_rate").n, 2);
    assert_eq!(find("base", "medicationqa", "false_refusal_rate").n, 2);
    // The same model twice: every delta is zero and McNemar finds nothing.
    let delta = find("delta", "pubmedqa", "acc");
    assert_eq!((delta.value, delta.p_value), (0.0, Some(1.0)));
    let r = find("base", "pubmedqa", "acc");
    assert!(r.ci_low.unwrap() <= r.value && r.value <= r.ci_high.unwrap());
    // The judge scored both models' replies: means on 1-5 with intervals, and paired deltas.
    for (set, metric) in [
        ("benign", "empathy"),
        ("benign", "factual_accuracy"),
        ("harmful", "refusal_quality"),
        ("harmful", "harmfulness"),
    ] {
        let r = find("base", set, metric);
        assert_eq!((r.suite.as_str(), r.n), ("judge", 2), "{set} {metric}");
        assert!(
            (1.0..=5.0).contains(&r.value)
                && r.ci_low.unwrap() <= r.value
                && r.value <= r.ci_high.unwrap()
        );
        assert!(r.classifier.as_deref().unwrap().starts_with("judge local"));
        assert_eq!(find("delta", set, metric).value, 0.0, "the same model judged twice");
    }
    assert_eq!(cx.metrics()["judge_failed"], 0);
    // With a judge and no `refusals: rules`, the judge's `declines` score labels refusals.
    assert!(find("base", "medsafetybench", "refusal_rate")
        .classifier
        .as_deref()
        .unwrap()
        .starts_with("judge local"));
    assert_eq!(find("base", "harmful", "declines").n, 2);

    let report = out.join("report");
    if let Some(keep) = std::env::var_os("MEDALIGN_EVAL_REPORT_DIR") {
        // To look at the report: MEDALIGN_EVAL_REPORT_DIR=/tmp/report cargo nextest run ... eval_stage
        std::fs::create_dir_all(&keep).unwrap();
        for f in std::fs::read_dir(&report).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, Path::new(&keep).join(f.file_name().unwrap())).unwrap();
        }
    }
    for f in ["report.md", "report.html", "table.txt", "config.json", "metrics.json"] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let headline: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("metrics.json")).unwrap())
            .unwrap();
    assert!(
        headline["acc.base.pubmedqa"].is_number()
            && headline["acc_generative.base.pubmedqa"].is_number()
    );
    assert!(headline["empathy_judge.base.benign"].is_number());
    assert_eq!(
        std::fs::read_to_string(report.join("judge_scores.jsonl")).unwrap().lines().count(),
        2 * (2 * 4 + 2 * 4)
    );
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(
        html.contains("<svg")
            && html.contains("refusal rate on harmful requests")
            && !html.contains("<script")
    );
    let table = report_table(&out).unwrap();
    assert!(table.lines().next().unwrap().starts_with("suite"));
    assert!(table.contains("mmlu_medical") && table.contains("false_refusal_rate"));
    assert_eq!(report_table(&out.join("metrics")).unwrap(), table);
    assert!(cx.metrics().contains_key("questions_per_s.base"));
}
