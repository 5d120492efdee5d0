//! The register stage run standalone: a base-model-only registration and one with an adapter
//! and an eval report, each recorded in the registry and pinned.

use std::collections::BTreeMap;
use std::path::Path;

use medalign_engine::{CheckContext, InputArtifact, RunContext, StageConfig, StageProgress};

use medalign_registry::{ModelRef, Registration, Registry};

use super::RegisterConfig;

fn run(
    cfg: &RegisterConfig,
    dir: &Path,
    inputs: BTreeMap<&'static str, Vec<InputArtifact>>,
) -> (Vec<(String, String)>, Registration) {
    let check = CheckContext::new(dir.parent().unwrap().to_path_buf());
    let progress = StageProgress::hidden();
    let mut cx = RunContext::standalone(&check, &progress, dir, inputs, &["model"]).unwrap();
    cfg.run(&mut cx).unwrap();
    let pins = cx.pins().to_vec();
    (pins, Registration::read(&dir.join("model")).unwrap())
}

#[test]
fn registers_a_base_model_alone_and_then_an_adapter_with_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.gguf");
    std::fs::write(&base, b"not really weights").unwrap();
    let cfg = RegisterConfig {
        name: "med".into(),
        base_model: Some("base.gguf".into()),
        ..Default::default()
    };
    let work = dir.path().join("run");
    let (pins, reg) = run(&cfg, &work, BTreeMap::new());
    assert_eq!((reg.version, reg.adapter.as_deref()), (1, None));
    assert_eq!(pins.len(), 1, "the artifact is pinned");
    assert_eq!(reg.base_model_hash, medalign_engine::hash_file(&base).unwrap());

    let adapter = dir.path().join("adapter");
    std::fs::create_dir_all(&adapter).unwrap();
    std::fs::write(
        adapter.join("adapter_config.json"),
        r#"{"base_model_name_or_path": "base.gguf", "r": 8}"#,
    )
    .unwrap();
    std::fs::write(adapter.join("adapter_model.safetensors"), b"x").unwrap();
    let eval = dir.path().join("eval");
    std::fs::create_dir_all(&eval).unwrap();
    std::fs::write(eval.join("metrics.json"), r#"{"medqa_accuracy": 0.41}"#).unwrap();
    let artifact = |stage: &str, kind: &str, d: &Path| InputArtifact {
        stage: stage.into(),
        output: stage.into(),
        kind: kind.into(),
        key: format!("{stage}key"),
        dir: d.to_path_buf(),
    };
    let inputs = BTreeMap::from([
        ("adapter", vec![artifact("sft", "adapter", &adapter)]),
        ("eval", vec![artifact("eval", "eval_report", &eval)]),
    ]);
    let cfg = RegisterConfig {
        name: "med".into(),
        aliases: vec!["staging".into()],
        ..Default::default()
    };
    let second = work;
    let (_, reg) = run(&cfg, &second, inputs);
    assert_eq!((reg.version, reg.adapter.as_deref()), (2, Some("adapter")));
    assert!(second.join("model/adapter/adapter_model.safetensors").is_file());
    let (spec, adapter_dir) = reg.load_plan(&second.join("model"));
    assert!(spec.ends_with("base.gguf") && adapter_dir.unwrap().ends_with("adapter"), "{spec}");

    let registry = Registry::open(&second.join(".store")).unwrap();
    let v = registry.get(&"med@staging".parse::<ModelRef>().unwrap()).unwrap();
    assert_eq!(v.metrics["medqa_accuracy"], 0.41);
    assert_eq!(v.aliases, vec!["latest".to_string(), "staging".to_string()]);
}
