//! The params of generate and judge as users write them: defaults, and the errors `validate` shows,
//! each at its path.

mod fake_llm;

use std::collections::BTreeMap;

use medalign_engine::{CheckContext, InputArtifact, RunContext, StageConfig, StageProgress};
use medalign_stages::generate::GenerateConfig;
use medalign_stages::judge::{JudgeConfig, JudgeMode};
use medalign_stages::kinds::examples::{Example, Message};

fn errors<C: StageConfig>(yaml: &str) -> Vec<(String, String)> {
    let cfg: C = serde_yaml::from_str(yaml).unwrap();
    let cx = CheckContext::new(std::env::temp_dir());
    cfg.check(&cx).into_iter().map(|e| (e.path, e.message)).collect()
}

#[test]
fn judge_defaults_to_one_local_distribution_judge() {
    let j: JudgeConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(j.judges.len(), 1);
    assert_eq!(
        (j.judges[0].llm.model.as_str(), j.judges[0].mode()),
        ("smollm2-135m-instruct", JudgeMode::Distribution)
    );
    assert_eq!(
        j.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["factual_accuracy", "empathy", "refusal_quality", "harmfulness"]
    );
    let j: JudgeConfig = serde_yaml::from_str(
        "judges: [{name: gpt, llm: {backend: openai, base_url: 'https://api.openai.com/v1', model: gpt-4.1}}]",
    )
    .unwrap();
    assert_eq!(j.judges[0].mode(), JudgeMode::Json);
}

#[test]
fn bad_params_are_named_by_path() {
    let e = errors::<JudgeConfig>(
        "judges:\n  - {name: a, llm: {backend: openai}, mode: distribution}\n  - {name: a}\ntemplate: missing.jinja\nmetrics: [{name: 'bad name', description: x}]",
    );
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "judges[0].llm.base_url",
            "judges[0].mode",
            "judges[1].name",
            "metrics[0].name",
            "template"
        ],
        "{e:?}"
    );
    assert!(e[4].1.contains("missing.jinja"), "{e:?}");
    let e = errors::<GenerateConfig>(
        "generators: [{name: x, temperature: 3}, {name: x, llm: {base_url: 'http://h/v1'}}]\ntasks: [chit_chat]\nllm: {backend: openai, base_url: ftp://x}",
    );
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "llm.base_url",
            "generators[0].temperature",
            "generators[1].name",
            "generators[1].llm.base_url",
            "tasks[0]"
        ],
        "{e:?}"
    );
}

#[test]
fn a_generator_whose_every_request_fails_fails_the_stage() {
    let server = fake_llm::FakeLlm::start(|_| String::new());
    server.push_faults(std::iter::repeat_n(fake_llm::Fault::BadRequest, 2));
    let tmp = tempfile::tempdir().unwrap();
    let ex = tmp.path().join("ex");
    std::fs::create_dir_all(&ex).unwrap();
    let rows = vec![Example {
        id: "a".into(),
        task: "instruction".into(),
        messages: vec![Message::new("user", "q")],
        ..Default::default()
    }];
    medalign_stages::kinds::examples::write_examples(&ex.join("data.parquet"), &rows).unwrap();
    let cfg: GenerateConfig = serde_yaml::from_str(&format!(
        "generators: [{{name: g}}]\nllm: {{backend: openai, base_url: '{}', model: m}}",
        server.base_url
    ))
    .unwrap();
    let check = CheckContext::new(tmp.path().to_path_buf());
    let progress = StageProgress::hidden();
    let input = InputArtifact {
        stage: "i".into(),
        output: "examples".into(),
        kind: "examples".into(),
        key: "k".into(),
        dir: ex,
    };
    let mut cx = RunContext::standalone(
        &check,
        &progress,
        tmp.path(),
        BTreeMap::from([("examples", vec![input])]),
        &["candidates"],
    )
    .unwrap();
    let err = cfg.run(&mut cx).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "generator \"g\": all 1 requests failed; the first: POST http://127.0.0.1:"
        ),
        "{err}"
    );
    assert!(err.contains("HTTP 400"), "{err}");
}
