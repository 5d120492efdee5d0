//! generate -> judge -> pair with the real SmolLM2-135M-Instruct in this process, on MedSafetyBench
//! rows: skipped (with a note) when the model is not in the cache. Prints judge throughput and the
//! cache hit rate of a rerun.
//!
//! `MEDALIGN_SAFETY_DATA` (default: the project's `data/medsafetybench`) and `MEDALIGN_SAFETY_LIMIT`
//! (default 3 prompts) choose the data, e.g. `../shared/data/medsafetybench/train/gpt4` and 40.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use medalign_engine::{CheckContext, InputArtifact, RunContext, StageConfig, StageProgress};
use medalign_model::fetch::KnownModel;
use medalign_stages::ingest::IngestConfig;
use medalign_stages::kinds::judgments::read_judgments;
use medalign_stages::kinds::pairs::read_pairs;
use serde_json::Value;

fn run<C: StageConfig>(
    cfg: &C,
    dir: &Path,
    inputs: Vec<(&'static str, &str, PathBuf)>,
    output: &'static str,
) -> BTreeMap<String, Value> {
    let check = CheckContext::new(dir.to_path_buf());
    assert_eq!(cfg.check(&check), vec![]);
    let mut bound: BTreeMap<&'static str, Vec<InputArtifact>> = BTreeMap::new();
    for (slot, kind, d) in inputs {
        bound.entry(slot).or_default().push(InputArtifact {
            stage: "up".into(),
            output: kind.into(),
            kind: kind.into(),
            key: "k".into(),
            dir: d,
        });
    }
    let progress = StageProgress::hidden();
    let mut cx = RunContext::standalone(&check, &progress, dir, bound, &[output]).unwrap();
    cfg.run(&mut cx).unwrap();
    cx.metrics().clone()
}

#[test]
fn smollm2_judges_medsafetybench_and_pairs_reconcile() {
    let known = KnownModel::by_name("smollm2-135m-instruct").unwrap();
    if !known.cached_path().is_file() {
        eprintln!(
            "note: skipped: {} is not cached (run `medalign` once to fetch it)",
            known.cached_path().display()
        );
        return;
    }
    let data = std::env::var("MEDALIGN_SAFETY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/medsafetybench"));
    let limit: usize =
        std::env::var("MEDALIGN_SAFETY_LIMIT").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let ingest: IngestConfig = serde_yaml::from_str(&format!(
        "sources: [{{path: '{}', format: medsafetybench}}]",
        data.display()
    ))
    .unwrap();
    let examples = ingest.ingest(|p: &str| PathBuf::from(p)).unwrap().examples;
    std::fs::create_dir_all(root.join("ex")).unwrap();
    medalign_stages::kinds::examples::write_examples(&root.join("ex/data.parquet"), &examples)
        .unwrap();

    let generate: medalign_stages::generate::GenerateConfig = serde_yaml::from_str(&format!(
        "limit: {limit}\nmax_tokens: 40\nllm: {{batch_size: 4}}\ngenerators:\n  - {{name: reference, source: reference}}\n  \
         - {{name: high, temperature: 0.2, with_reference: true}}\n  - {{name: low, temperature: 1.0}}\n"
    ))
    .unwrap();
    let judge: medalign_stages::judge::JudgeConfig =
        serde_yaml::from_str("judges: [{name: smollm2, llm: {batch_size: 4}}]").unwrap();
    let pair: medalign_stages::pair::PairConfig = serde_yaml::from_str("margin: 0.1").unwrap();

    let t = Instant::now();
    let g = run(
        &generate,
        &root.join("gen"),
        vec![("examples", "examples", root.join("ex"))],
        "candidates",
    );
    eprintln!("generate: {:.1} s, {g:?}", t.elapsed().as_secs_f64());
    let c_dir = root.join("gen/candidates");
    let t = Instant::now();
    let j = run(
        &judge,
        &root.join("judge"),
        vec![("responses", "candidates", c_dir.clone())],
        "judgments",
    );
    let secs = t.elapsed().as_secs_f64();
    let p = run(
        &pair,
        &root.join("pair"),
        vec![
            ("judgments", "judgments", root.join("judge/judgments")),
            ("responses", "candidates", c_dir.clone()),
        ],
        "pairs",
    );
    let judgments = read_judgments(&root.join("judge/judgments/data.parquet")).unwrap();
    let pairs = read_pairs(&root.join("pair/pairs/data.parquet")).unwrap();
    eprintln!(
        "judge: {} judgments in {secs:.1} s = {:.2} judgments/s; {j:?}",
        judgments.len(),
        judgments.len() as f64 / secs
    );
    eprintln!("pair: {p:?}");

    assert_eq!(g["candidates"].as_u64(), Some(3 * limit as u64));
    // Safety prompts: refusal_quality, empathy, harmfulness per candidate, all scored by the distribution judge.
    assert_eq!(judgments.len(), 3 * 3 * limit);
    assert!(
        judgments.iter().all(|r| r.status == "ok" && (1..=5).contains(&r.score.unwrap())),
        "{judgments:?}"
    );
    let n = |k: &str| p[k].as_u64().unwrap();
    assert_eq!(n("prompts"), limit as u64);
    assert_eq!(n("prompts"), n("pairs") + n("ties_dropped") + n("unpaired"));
    assert_eq!(n("pairs"), n("gold") + n("silver"));
    assert!(pairs
        .iter()
        .all(|x| x.kind == "safety" && x.chosen_generator == "reference" && x.margin >= 0.1));

    let t = Instant::now();
    let again =
        run(&judge, &root.join("judge"), vec![("responses", "candidates", c_dir)], "judgments");
    eprintln!(
        "judge rerun: {:.2} s, cache hit rate {}",
        t.elapsed().as_secs_f64(),
        again["cache_hit_rate"]
    );
    assert_eq!(
        (again["requests_sent"].as_u64(), again["cache_hit_rate"].as_f64()),
        (Some(0), Some(1.0))
    );
}
