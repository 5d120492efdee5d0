//! The server on a tiny random model, driven with raw HTTP: every endpoint, streaming, the error
//! cases with their statuses, auth, the Vertex AI routes, batching, and graceful shutdown.

mod common;

use std::net::SocketAddr;

use common::{options, tiny_server, CONTEXT};
use medalign_server::client::{request, stream};
use medalign_server::router::VertexRoutes;
use medalign_server::ServerOptions;
use serde_json::{json, Value};

fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let r = request(addr, "POST", path, body.to_string().as_bytes(), &[]).unwrap();
    (r.status, r.json())
}

fn chat(model: &str, content: &str, max_tokens: usize) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0})
}

/// Streams a chat completion: (text, finish reason, usage, saw [DONE]).
fn stream_chat(addr: SocketAddr, body: &Value) -> (String, String, Value, bool) {
    let (mut text, mut finish, mut usage, mut done) =
        (String::new(), String::new(), Value::Null, false);
    let status = stream(addr, "/v1/chat/completions", body, &mut |data| {
        if data == "[DONE]" {
            done = true;
            return;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = f.to_string();
        }
        if !v["usage"].is_null() {
            usage = v["usage"].clone();
        }
    })
    .unwrap();
    assert_eq!(status, 200);
    (text, finish, usage, done)
}

#[test]
fn answers_chat_completions_models_health_and_metrics() {
    let s = tiny_server(options());
    let addr = s.addr();
    let r = request(addr, "GET", "/health", b"", &[]).unwrap();
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let r = request(addr, "GET", "/v1/models", b"", &[]).unwrap();
    assert_eq!(r.json()["data"][0]["id"], s.model.as_str());

    let (status, v) = post(addr, "/v1/chat/completions", &chat(&s.model, "hello there", 12));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let u = &v["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 10, "{v}");
    assert!(u["completion_tokens"].as_u64().unwrap() <= 12);
    assert_eq!(
        u["total_tokens"],
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );

    let mut body = chat(&s.model, "hello there", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (text, finish, usage, done) = stream_chat(addr, &body);
    assert!(done);
    assert_eq!(
        text,
        v["choices"][0]["message"]["content"].as_str().unwrap(),
        "streamed and whole answers differ"
    );
    assert_eq!(finish, v["choices"][0]["finish_reason"].as_str().unwrap());
    // The same prompt again reuses the first one's keys and values, all but its last token.
    let prompt_tokens = u["prompt_tokens"].as_u64().unwrap();
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], prompt_tokens - 1);
    for field in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(usage[field], v["usage"][field]);
    }

    let (status, c) = post(
        addr,
        "/v1/completions",
        &json!({"model": s.model, "prompt": "once upon", "max_tokens": 5, "temperature": 0}),
    );
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    assert!(c["choices"][0]["text"].is_string());

    let m = request(addr, "GET", "/metrics", b"", &[]).unwrap().body;
    assert!(
        m.contains("medalign_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"),
        "{m}"
    );
    assert!(m.contains("medalign_first_token_seconds_count"), "{m}");
    assert!(m.contains("medalign_queue_depth 0"), "{m}");
    assert!(
        m.contains(&format!("medalign_prefix_cache_reused_tokens_total {}", prompt_tokens - 1)),
        "{m}"
    );
    s.server.stop().unwrap();
}

#[test]
fn bad_requests_get_openai_errors_with_the_right_status() {
    let s = tiny_server(ServerOptions { body_limit: 4096, ..options() });
    let addr = s.addr();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"model\": ".to_vec(), 400, "invalid_json"),
        ("unknown model", chat("gpt-9", "hi", 4).to_string().into_bytes(), 404, "model_not_found"),
        ("empty messages", json!({"model": s.model, "messages": []}).to_string().into_bytes(), 400, "invalid_value"),
        ("max_tokens beyond context", chat(&s.model, "hi", CONTEXT + 1).to_string().into_bytes(), 400, "context_length_exceeded"),
        ("oversized body", chat(&s.model, &"a".repeat(8000), 4).to_string().into_bytes(), 413, "request_too_large"),
        (
            "temperature out of range",
            json!({"model": s.model, "messages": [{"role": "user", "content": "hi"}], "temperature": 7}).to_string().into_bytes(),
            400,
            "invalid_value",
        ),
        (
            "top_p zero",
            json!({"model": s.model, "messages": [{"role": "user", "content": "hi"}], "top_p": 0}).to_string().into_bytes(),
            400,
            "invalid_value",
        ),
        ("messages missing", json!({"model": s.model}).to_string().into_bytes(), 400, "invalid_request"),
    ];
    for (what, body, status, code) in cases {
        let r = request(addr, "POST", "/v1/chat/completions", &body, &[]).unwrap();
        let v = r.json();
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(v["error"]["code"], code, "{what}: {}", r.body);
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        assert!(v["error"]["type"].is_string(), "{what}");
    }
    let r = request(
        addr,
        "POST",
        "/v1/chat/completions",
        chat(&s.model, "hi", 4).to_string().as_bytes(),
        &[],
    )
    .unwrap();
    assert_eq!(r.status, 200, "the server still answers after the errors");
    let r = request(addr, "GET", "/v1/nothing", b"", &[]).unwrap();
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("unknown_url")));
    let m = request(addr, "GET", "/metrics", b"", &[]).unwrap().body;
    assert!(m.contains("status=\"413\"} 1") && m.contains("status=\"404\"} 1"), "{m}");
    s.server.stop().unwrap();
}

#[test]
fn bearer_token_guards_v1_but_not_health() {
    let s = tiny_server(ServerOptions { api_key: Some("sekret".into()), ..options() });
    let addr = s.addr();
    let body = chat(&s.model, "hi", 3).to_string();
    let r = request(addr, "POST", "/v1/chat/completions", body.as_bytes(), &[]).unwrap();
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let r = request(
        addr,
        "POST",
        "/v1/chat/completions",
        body.as_bytes(),
        &[("Authorization", "Bearer wrong")],
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let r = request(
        addr,
        "POST",
        "/v1/chat/completions",
        body.as_bytes(),
        &[("Authorization", "Bearer sekret")],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(request(addr, "GET", "/health", b"", &[]).unwrap().status, 200);
    assert_eq!(request(addr, "GET", "/metrics", b"", &[]).unwrap().status, 200);
    s.server.stop().unwrap();
}

#[test]
fn bearer_token_guards_every_route_that_runs_the_model_and_is_checked_first() {
    let routes =
        VertexRoutes { health: "/vertex/health".into(), predict: "/vertex/predict".into() };
    let s =
        tiny_server(ServerOptions { api_key: Some("sekret".into()), vertex: routes, ..options() });
    let addr = s.addr();
    let predict = json!({"instances": [{"prompt": "the patient", "max_tokens": 2}]}).to_string();
    for path in
        ["/predict", "/vertex/predict", "/v1/completions", "/v1/models", "/v1/nothing", "/nothing"]
    {
        let method = if path == "/v1/models" { "GET" } else { "POST" };
        let r = request(addr, method, path, predict.as_bytes(), &[]).unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str()),
            (401, Some("invalid_api_key")),
            "{path}: {}",
            r.body
        );
        let r =
            request(addr, method, path, predict.as_bytes(), &[("Authorization", "Bearer sekre")])
                .unwrap();
        assert_eq!(r.status, 401, "{path} with a wrong key");
    }
    let key = [("Authorization", "Bearer sekret")];
    let r = request(addr, "POST", "/predict", predict.as_bytes(), &key).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(addr, "POST", "/vertex/predict", predict.as_bytes(), &key).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(addr, "POST", "/v1/nothing", b"", &key).unwrap();
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (404, Some("unknown_url")));
    assert_eq!(request(addr, "GET", "/vertex/health", b"", &[]).unwrap().status, 200);
    s.server.stop().unwrap();
}

#[test]
fn wrong_methods_get_405_with_an_openai_error_body() {
    let s = tiny_server(options());
    let addr = s.addr();
    for (method, path) in [
        ("GET", "/v1/chat/completions"),
        ("GET", "/v1/completions"),
        ("POST", "/health"),
        ("DELETE", "/v1/models"),
        ("GET", "/predict"),
    ] {
        let r = request(addr, method, path, b"", &[]).unwrap();
        let v = r.json();
        assert_eq!(
            (r.status, v["error"]["code"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}: {}",
            r.body
        );
        assert_eq!(v["error"]["message"], format!("{method} is not allowed on {path}"));
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
    s.server.stop().unwrap();
}

#[test]
fn vertex_routes_take_instances_and_return_predictions() {
    let routes =
        VertexRoutes { health: "/vertex/health".into(), predict: "/vertex/predict".into() };
    let s = tiny_server(ServerOptions { vertex: routes, ..options() });
    let addr = s.addr();
    assert_eq!(request(addr, "GET", "/vertex/health", b"", &[]).unwrap().status, 200);
    let body = json!({
        "instances": [
            {"messages": [{"role": "user", "content": "hello"}]},
            {"prompt": "the patient", "max_tokens": 3},
        ],
        "parameters": {"max_tokens": 6, "temperature": 0}
    });
    let (status, v) = post(addr, "/vertex/predict", &body);
    assert_eq!(status, 200, "{v}");
    let p = v["predictions"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert!(p[0]["content"].is_string() && p[1]["text"].is_string(), "{v}");
    assert!(p[0]["usage"]["completion_tokens"].as_u64().unwrap() <= 6);
    assert!(
        p[1]["usage"]["completion_tokens"].as_u64().unwrap() <= 3,
        "an instance's own max_tokens wins"
    );
    let (status, v) = post(addr, "/vertex/predict", &json!({"instances": []}));
    assert_eq!((status, v["error"]["param"].as_str()), (400, Some("instances")));
    let (status, _) = post(addr, "/vertex/predict", &json!({"instances": [{"foo": 1}]}));
    assert_eq!(status, 400);
    s.server.stop().unwrap();
}

#[test]
fn concurrent_streams_are_batched_and_each_gets_its_own_answer() {
    let s = tiny_server(options());
    let addr = s.addr();
    let prompts: Vec<String> =
        (0..6).map(|i| format!("question {i}: {}", "abc".repeat(i + 1))).collect();
    let body = |p: &str| {
        let mut b = chat(&s.model, p, 24);
        b["stream"] = json!(true);
        b
    };
    let alone: Vec<String> = prompts.iter().map(|p| stream_chat(addr, &body(p)).0).collect();
    let together: Vec<(String, String, Value, bool)> = std::thread::scope(|sc| {
        let hs: Vec<_> =
            prompts.iter().map(|p| sc.spawn(move || stream_chat(addr, &body(p)))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (got, want)) in together.iter().zip(&alone).enumerate() {
        assert!(got.3, "stream {i} ended without [DONE]");
        assert_eq!(&got.0, want, "stream {i} got another answer under load");
    }
    let m = request(addr, "GET", "/metrics", b"", &[]).unwrap().body;
    let steps: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("medalign_decode_steps_total "))
        .unwrap()
        .parse()
        .unwrap();
    let tokens: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("medalign_generated_tokens_total "))
        .unwrap()
        .parse()
        .unwrap();
    // Alone, every token is a step; together, steps carry several tokens.
    assert!(tokens / steps > 1.2, "no batching: {tokens} tokens in {steps} steps");
    s.server.stop().unwrap();
}

#[test]
fn graceful_shutdown_finishes_in_flight_streams() {
    let s = tiny_server(options());
    let addr = s.addr();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut body = chat(&s.model, "tell me more", 60);
    body["stream"] = json!(true);
    body["stop"] = json!(["zzzzzzzzzzzz"]);
    let client = std::thread::spawn(move || {
        let mut first = Some(tx);
        let (mut chunks, mut done) = (0, false);
        stream(addr, "/v1/chat/completions", &body, &mut |d| {
            if let Some(tx) = first.take() {
                let _ = tx.send(());
            }
            if d == "[DONE]" {
                done = true;
            } else {
                chunks += 1;
            }
        })
        .unwrap();
        (chunks, done)
    });
    rx.recv().unwrap();
    s.server.stop().unwrap();
    let (chunks, done) = client.join().unwrap();
    assert!(done, "the stream was cut by shutdown after {chunks} chunks");
    assert!(std::net::TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

/// A conversation's next turn reuses the earlier turn's prompt and its answer: the finished
/// sequence's cache is kept with the answer's tokens.
#[test]
fn a_next_turn_reuses_the_earlier_answer() {
    let s = tiny_server(options());
    let addr = s.addr();
    let (status, first) = post(addr, "/v1/chat/completions", &chat(&s.model, "hello there", 6));
    assert_eq!(status, 200, "{first}");
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    let answer_tokens = first["usage"]["completion_tokens"].as_u64().unwrap();
    let body = json!({"model": s.model, "max_tokens": 4, "temperature": 0, "messages": [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "and then?"}]});
    let (status, second) = post(addr, "/v1/chat/completions", &body);
    assert_eq!(status, 200, "{second}");
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    // All of the first prompt, and of the answer all but its last token (never fed back).
    assert!(answer_tokens >= 2, "{first}");
    assert!(cached >= first_prompt + answer_tokens - 1, "cached {cached} of a first prompt of {first_prompt} and {answer_tokens} answer tokens: {second}");
    assert!(cached <= first_prompt + answer_tokens, "{second}");
    s.server.stop().unwrap();
}
