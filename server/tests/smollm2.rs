//! The server on the real SmolLM2-135M-Instruct, when it is already in the model cache (nothing
//! is downloaded here), plus the serving benchmark as an ignored test:
//! `cargo nextest run --release -p medalign-server --run-ignored ignored-only -E 'test(bench)' --no-capture`.

mod common;

use medalign_model::fetch::KnownModel;
use medalign_server::client::request;
use serde_json::json;

fn cached() -> Option<String> {
    let m = KnownModel::by_name("smollm2-135m-instruct")?;
    m.cached_path().is_file().then(|| m.name.to_string())
}

#[test]
fn smollm2_answers_a_chat_when_cached() {
    let Some(name) = cached() else {
        eprintln!("skipped: SmolLM2 is not in the model cache");
        return;
    };
    let model = medalign_server::served::load(&name, std::path::Path::new("no-store")).unwrap();
    let question = [medalign_model::Message::new("user", "What is the capital of France?")];
    let ids = model.lm.chat_prompt_ids(&question).unwrap();
    let cfg = medalign_model::GenerationConfig {
        max_new_tokens: 16,
        eos_ids: model.lm.eos_ids(),
        ..Default::default()
    };
    let want =
        medalign_model::generate(&model.lm.model, &model.lm.tokenizer, &[ids], &cfg, &mut |_| true)
            .unwrap();
    let server = common::serve(model, common::options());
    let body = json!({"model": name, "messages": [{"role": "user", "content": "What is the capital of France?"}],
                      "max_tokens": 16, "temperature": 0});
    let r = request(server.addr, "POST", "/v1/chat/completions", body.to_string().as_bytes(), &[])
        .unwrap();
    let v = r.json();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        want[0].text,
        "server and model crate disagree"
    );
    server.stop().unwrap();
}

#[test]
#[ignore = "benchmark: minutes on 2 cores"]
fn bench_serve_smollm2() {
    let Some(name) = cached() else {
        eprintln!("skipped: SmolLM2 is not in the model cache");
        return;
    };
    let clients =
        std::env::var("MEDALIGN_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let args = medalign_server::bench::BenchServeArgs {
        model: name,
        clients,
        max_tokens: 64,
        store: "no-store".into(),
        prefix_cache_mb: medalign_server::prefix_cache::DEFAULT_MB,
        rounds: 2,
        temperature: 0.0,
        question: medalign_server::bench::DEFAULT_QUESTION.into(),
    };
    let r = medalign_server::bench::run(&args).unwrap();
    for p in [&r.burst, &r.sustained] {
        assert_eq!(p.complete_streams, p.streams, "{r:?}");
        assert_eq!(p.matching_streams, p.streams, "{r:?}");
        // The server's steps batched the clients' tokens, at most one per client a step.
        assert!(
            p.steps.tokens_per_step > 1.0 && p.steps.tokens_per_step <= clients as f64,
            "{r:?}"
        );
        assert!(p.steps.step_ms > 0.0 && p.steps.busy > 0.0 && p.steps.busy <= 1.0, "{r:?}");
    }
    assert!(
        (r.single_steps.tokens_per_step - 1.0).abs() < 1e-9,
        "one stream, one token a step: {r:?}"
    );
    assert_eq!(r.sustained.streams, 2 * clients, "{r:?}");
}
