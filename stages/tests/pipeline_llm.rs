//! ingest -> generate -> judge -> pair through the engine (manifest, keys, store, schema checks)
//! with a fake OpenAI-compatible server: a rerun is all cached and sends nothing; editing the judge
//! template reruns judge alone (its input file is in the key), and restoring it is cached again.

mod fake_llm;

use std::collections::BTreeMap;
use std::path::Path;

use fake_llm::FakeLlm;
use medalign_engine::{KindRegistry, RunOptions, StageReport, StageStatus};
use serde_json::{json, Value};

fn respond(r: &Value) -> String {
    let messages = r["messages"].as_array().unwrap();
    if !messages[0]["content"].as_str().unwrap_or("").contains("grades answers") {
        return "Sure, here is exactly how to do that.".into();
    }
    let user = messages[1]["content"].as_str().unwrap();
    let compliant = user.contains("Sure, here is exactly how");
    let (good, harm) = if compliant { (1, 5) } else { (5, 1) };
    json!({"empathy": {"score": good, "rationale": "r"}, "refusal_quality": {"score": good, "rationale": "r"},
           "harmfulness": {"score": harm, "rationale": "r"}, "factual_accuracy": {"score": good, "rationale": "r"}})
    .to_string()
}

fn manifest(url: &str) -> String {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/medsafetybench");
    r#"name: llm-test
store: store
seed: 3
stages:
  - id: ingest
    kind: ingest
    params: {sources: [{path: 'DATA', format: medsafetybench}]}
  - id: generate
    kind: generate
    inputs: [ingest]
    params:
      limit: 4
      llm: {backend: openai, base_url: 'URL', model: gen}
      generators: [{name: reference, source: reference}, {name: low, temperature: 1.0}]
  - id: judge
    kind: judge
    inputs: [generate]
    params:
      template: judge.jinja
      judges:
        - {name: a, llm: {backend: openai, base_url: 'URL', model: ja}}
        - {name: b, llm: {backend: openai, base_url: 'URL', model: jb}}
  - id: pair
    kind: pair
    inputs: {judgments: [judge], responses: [generate]}
"#
    .replace("DATA", &data.display().to_string())
    .replace("URL", url)
}

fn run(dir: &Path) -> BTreeMap<String, StageReport> {
    let mut registry = KindRegistry::new();
    medalign_stages::register(&mut registry);
    let plan = medalign_engine::load(&dir.join("p.yaml"), &registry, &BTreeMap::new()).unwrap();
    let reports = medalign_engine::run(&plan, &registry, &RunOptions::default()).unwrap();
    reports.into_iter().map(|r| (r.id.clone(), r)).collect()
}

#[test]
fn the_engine_caches_what_the_llm_cache_does_not_need_to_resend() {
    let server = FakeLlm::start(respond);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.yaml"), manifest(&server.base_url)).unwrap();
    std::fs::write(dir.join("judge.jinja"), medalign_stages::judge::JSON_TEMPLATE).unwrap();

    let r = run(dir);
    for id in ["ingest", "generate", "judge", "pair"] {
        assert_eq!(r[id].status, StageStatus::Ran, "{id}: {}", r[id].reason);
    }
    assert_eq!(server.requests(), 4 + 2 * 8, "4 generations, 2 judges x 8 responses");
    let n = |id: &str, k: &str| r[id].metrics[k].as_u64().unwrap();
    assert_eq!((n("pair", "pairs"), n("pair", "gold"), n("pair", "safety_pairs")), (4, 4, 4));

    let r = run(dir);
    assert!(
        r.values().all(|s| s.status == StageStatus::Cached),
        "{:?}",
        r.values().map(|s| (&s.id, s.status)).collect::<Vec<_>>()
    );
    assert_eq!(server.requests(), 20);

    // Editing the template changes every judge prompt: judge reruns and asks again. Its judgments come
    // out the same, so pair, keyed by its inputs' content, stays cached.
    let edited = medalign_stages::judge::JSON_TEMPLATE
        .replace("experienced physician", "experienced pharmacist");
    std::fs::write(dir.join("judge.jinja"), edited).unwrap();
    let r = run(dir);
    let status = |id: &str| r[id].status;
    assert_eq!(
        [status("ingest"), status("generate"), status("judge"), status("pair")],
        [StageStatus::Cached, StageStatus::Cached, StageStatus::Ran, StageStatus::Cached]
    );
    assert_eq!(server.requests(), 36);
    // Back to the old text: the store has that judge artifact; nothing is sent.
    std::fs::write(dir.join("judge.jinja"), medalign_stages::judge::JSON_TEMPLATE).unwrap();
    let r = run(dir);
    assert_eq!(r["judge"].status, StageStatus::Cached);
    assert_eq!(server.requests(), 36);
}
