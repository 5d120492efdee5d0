//! The routes: OpenAI endpoints under `/v1`, `/health`, `/metrics`, and the Vertex AI health and
//! predict routes; every route but the health and metrics ones behind the optional bearer token,
//! checked before anything else; JSON bodies with a size limit, and OpenAI-style errors for
//! everything that goes wrong, unknown routes and wrong methods included.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;
use crate::openai::{chat_completions, completions};
use crate::state::AppState;
use crate::vertex::predict;

/// Routes of the Vertex AI custom-container contract.
#[derive(Debug, Clone)]
pub struct VertexRoutes {
    /// `AIP_HEALTH_ROUTE`.
    pub health: String,
    /// `AIP_PREDICT_ROUTE`.
    pub predict: String,
}

impl VertexRoutes {
    /// From `AIP_HEALTH_ROUTE` / `AIP_PREDICT_ROUTE`, else `/health` and `/predict`.
    pub fn from_env() -> VertexRoutes {
        let var = |k: &str, d: &str| {
            std::env::var(k).ok().filter(|v| v.starts_with('/')).unwrap_or_else(|| d.to_string())
        };
        VertexRoutes {
            health: var("AIP_HEALTH_ROUTE", "/health"),
            predict: var("AIP_PREDICT_ROUTE", "/predict"),
        }
    }
}

/// Parses a JSON body: 413 when over the limit, 400 for malformed JSON or wrong fields.
pub fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "request_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(r.status(), code, r.body_text())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("We could not parse the JSON body of your request: {e}"),
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("Invalid request body: {e}"),
            )
        }
    })
}

/// The whole application.
pub fn router(state: Arc<AppState>, vertex: &VertexRoutes, body_limit: usize) -> Router {
    let v1 = Router::new()
        .route("/chat/completions", post(chat_completions))
        .route("/completions", post(completions))
        .route("/models", get(models));
    let mut app = Router::new()
        .nest("/v1", v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/predict", post(predict));
    if vertex.health != "/health" {
        app = app.route(&vertex.health, get(health));
    }
    if vertex.predict != "/predict" {
        app = app.route(&vertex.predict, post(predict));
    }
    let open =
        Arc::new(OpenRoutes(vec!["/health".into(), "/metrics".into(), vertex.health.clone()]));
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state((state.clone(), open), require_key))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The paths anyone may read without the key: health checks and metrics, which run no model.
struct OpenRoutes(Vec<String>);

/// Lets a request through when no key is configured, when it carries the key, or when it asks an
/// open route; everything else, unknown routes included, gets a 401 first.
async fn require_key(
    State((state, open)): State<(Arc<AppState>, Arc<OpenRoutes>)>,
    req: Request,
    next: Next,
) -> Response {
    let Some(key) = &state.api_key else { return next.run(req).await };
    if open.0.iter().any(|p| p == req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|g| same_secret(g.as_bytes(), key.as_bytes())) {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "Incorrect or missing API key: send `Authorization: Bearer <key>`",
    )
    .into_response()
}

/// Compares two secrets in time that depends on their lengths only, not on where they differ.
fn same_secret(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(json!({"object": "list", "data": [
        {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "medalign"}
    ]}))
}

async fn health(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(
        json!({"status": "ok", "model": state.model_id, "queue_depth": state.metrics.queue_depth()}),
    )
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_url",
        format!("Unknown request URL: {} {}", req.method(), req.uri().path()),
    )
}
