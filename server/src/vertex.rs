//! The Vertex AI predict route: `{"instances": [...], "parameters": {...}}` in,
//! `{"predictions": [...]}` out. An instance with `messages` is a chat completion, one with
//! `prompt` a text completion; `parameters` (max_tokens, temperature, ...) apply to every
//! instance unless it sets its own. Instances run concurrently in the batch.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{ChatRequest, CompletionRequest};
use crate::error::ApiError;
use crate::openai::collect;
use crate::router::parse_body;
use crate::state::{AppState, Submitted};

/// The request body.
#[derive(Debug, Deserialize)]
pub struct PredictRequest {
    /// One prediction each.
    pub instances: Vec<Value>,
    /// Defaults for every instance.
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

fn instance_request(
    state: &AppState,
    i: usize,
    inst: &Value,
    params: &Map<String, Value>,
) -> Result<(bool, Submitted), ApiError> {
    let at = |e: ApiError| ApiError { message: format!("instances[{i}]: {}", e.message), ..e };
    let Value::Object(fields) = inst else {
        return Err(ApiError::invalid(
            "instances",
            format!("instances[{i}] must be an object with `messages` or `prompt`"),
        ));
    };
    let mut merged = params.clone();
    merged.extend(fields.clone());
    merged.insert("stream".into(), json!(false));
    merged.entry("model").or_insert_with(|| json!(state.model_id));
    let value = Value::Object(merged);
    let bad = |e: serde_json::Error| ApiError::invalid("instances", format!("instances[{i}]: {e}"));
    if value.get("messages").is_some() {
        let req: ChatRequest = serde_json::from_value(value).map_err(bad)?;
        let settings = req.sampling.validate().map_err(at)?;
        let prompt = state.chat_prompt(&req.messages().map_err(at)?).map_err(at)?;
        Ok((true, state.submit(prompt, &settings, "messages").map_err(at)?))
    } else if value.get("prompt").is_some() {
        let req: CompletionRequest = serde_json::from_value(value).map_err(bad)?;
        let settings = req.sampling.validate().map_err(at)?;
        let prompt = state.text_prompt(&req.prompt().map_err(at)?).map_err(at)?;
        Ok((false, state.submit(prompt, &settings, "prompt").map_err(at)?))
    } else {
        Err(ApiError::invalid("instances", format!("instances[{i}] needs `messages` or `prompt`")))
    }
}

/// `POST` on the predict route.
pub async fn predict(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let result = run(&state, body).await;
    let status = result.as_ref().map_or_else(|e| e.status.as_u16(), |_| 200);
    state.metrics.request("predict", status, started.elapsed());
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let req: PredictRequest = parse_body(body)?;
    if req.instances.is_empty() {
        return Err(ApiError::invalid("instances", "instances must hold at least one instance"));
    }
    // Validate and queue every instance before waiting on any, so they share the batch.
    let submitted = req
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| instance_request(state, i, inst, &req.parameters))
        .collect::<Result<Vec<_>, _>>()?;
    let mut predictions = Vec::with_capacity(submitted.len());
    for (chat, s) in submitted {
        let a = collect(s.events).await?;
        let text_key = if chat { "content" } else { "text" };
        predictions
            .push(json!({text_key: a.text, "finish_reason": a.finish_reason, "usage": a.usage()}));
    }
    Ok(json!({"predictions": predictions}))
}
