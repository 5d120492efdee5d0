//! A fault-injecting OpenAI-compatible server on loopback for the LLM client tests: it answers
//! `POST /v1/chat/completions` with a responder's text, after first serving the queued faults
//! (429 with Retry-After, 500, a slow reply, malformed JSON, 400), and counts what it received.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One injected fault, served instead of an answer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with `Retry-After: <secs>`.
    RateLimit(&'static str),
    /// 500.
    ServerError,
    /// The answer, but only after this long.
    Slow(Duration),
    /// 200 with a body that is not a completion.
    Malformed,
    /// 400, which must not be retried.
    BadRequest,
    /// 401 that echoes the request's Authorization header in its body, as some proxies do.
    EchoAuth,
}

type Responder = dyn Fn(&Value) -> String + Send + Sync;

#[derive(Default)]
struct State {
    faults: Mutex<VecDeque<Fault>>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    bodies: Mutex<Vec<Value>>,
    auth: Mutex<Vec<Option<String>>>,
}

/// A running fake server.
pub struct FakeLlm {
    /// `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    state: Arc<State>,
}

impl FakeLlm {
    /// Starts a server answering with `responder(request body)`.
    pub fn start(responder: impl Fn(&Value) -> String + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let responder: Arc<Responder> = Arc::new(responder);
        let st = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, responder) = (st.clone(), responder.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &st, &*responder);
                });
            }
        });
        FakeLlm { base_url, state }
    }

    /// Queues faults, served in order to the next requests.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.faults.lock().unwrap().extend(faults);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests ever in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// The JSON bodies received.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// The `Authorization` headers received.
    pub fn auth_headers(&self) -> Vec<Option<String>> {
        self.state.auth.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, st: &State, responder: &Responder) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let (mut length, mut auth) = (0usize, None);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => auth = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(now, Ordering::SeqCst);
    st.requests.fetch_add(1, Ordering::SeqCst);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.bodies.lock().unwrap().push(request.clone());
    st.auth.lock().unwrap().push(auth.clone());
    let fault = st.faults.lock().unwrap().pop_front();
    let answer = || {
        let text = responder(&request);
        json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": text}}], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
        .to_string()
    };
    let (status, extra, body) = match fault {
        Some(Fault::RateLimit(secs)) => (
            "429 Too Many Requests",
            format!("Retry-After: {secs}\r\n"),
            r#"{"error":"slow down"}"#.to_string(),
        ),
        Some(Fault::ServerError) => {
            ("500 Internal Server Error", String::new(), r#"{"error":"boom"}"#.to_string())
        }
        Some(Fault::BadRequest) => {
            ("400 Bad Request", String::new(), r#"{"error":"bad model"}"#.to_string())
        }
        Some(Fault::EchoAuth) => {
            let sent = auth.clone().unwrap_or_default();
            let key = sent.trim_start_matches("Bearer ");
            (
                "401 Unauthorized",
                String::new(),
                format!(r#"{{"error":"invalid key {key}","got":"{sent}"}}"#),
            )
        }
        Some(Fault::Malformed) => {
            ("200 OK", String::new(), r#"{"choices": [{"message": "#.to_string())
        }
        Some(Fault::Slow(d)) => {
            std::thread::sleep(d);
            ("200 OK", String::new(), answer())
        }
        None => ("200 OK", String::new(), answer()),
    };
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut out = stream;
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    );
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())?;
    out.flush()
}

/// The last user turn of a request body.
pub fn last_user(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}
