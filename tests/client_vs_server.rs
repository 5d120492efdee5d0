//! The judge's and generator's OpenAI-compatible client against the project's own server on
//! loopback (a tiny random model): answers arrive, duplicate requests are sent once, and a second
//! pass is answered entirely from the reply cache without touching the server.

use std::time::Duration;

use medalign_model::SamplingParams;
use medalign_stages::kinds::examples::Message;
use medalign_stages::llm::{
    Backend, ChatRequest, EndpointSettings, OpenAiClient, ReplyCache, ReplyFormat, RetryPolicy,
};

fn request(question: &str, seed: u64) -> ChatRequest {
    ChatRequest {
        messages: vec![Message { role: "user".into(), content: question.into() }],
        sampling: SamplingParams { seed, ..Default::default() },
        max_tokens: 8,
        format: ReplyFormat::Text,
    }
}

#[test]
fn the_llm_client_talks_to_our_server_and_caches_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("tiny");
    std::fs::create_dir(&model_dir).unwrap();
    medalign_model::testing::write_tiny_model(&model_dir).unwrap();
    let model =
        medalign_server::served::load(&model_dir.to_string_lossy(), &dir.path().join("store"))
            .unwrap();
    let id = model.id.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server =
        medalign_server::start(model, listener, medalign_server::ServerOptions::default()).unwrap();

    let client = OpenAiClient::new(EndpointSettings {
        base_url: format!("http://{}/v1", server.addr),
        model: id,
        api_key_env: None,
        timeout: Duration::from_secs(60),
        retry: RetryPolicy::default(),
    })
    .unwrap();
    let backend = Backend::OpenAi { client, concurrency: 3 };
    let cache = ReplyCache::new(dir.path().join("cache"));
    let reqs = vec![
        request("what is a dose?", 1),
        request("is aspirin safe?", 2),
        request("what is a dose?", 1),
    ];

    let first = backend.complete_all(&reqs, &cache, &|_| {});
    let replies: Vec<_> = first.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(replies[0], replies[2], "the same request gets the same answer");
    for r in &replies {
        assert!(r.completion_tokens.is_some_and(|n| (1..=8).contains(&n)), "{r:?}");
    }
    let Backend::OpenAi { client, .. } = &backend else { unreachable!() };
    assert_eq!(client.attempts(), 2, "the duplicate request is sent once");

    let second = backend.complete_all(&reqs, &cache, &|_| {});
    assert_eq!(second.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>(), replies);
    assert_eq!(client.attempts(), 2, "a rerun is answered from the cache");
    assert_eq!(cache.hits(), 2, "one hit per distinct request; the duplicate shares its twin's");
}
