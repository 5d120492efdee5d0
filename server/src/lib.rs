//! The OpenAI-compatible HTTP server: `medalign serve --model NAME[@ALIAS]|PATH`.
//!
//! axum on tokio answers HTTP; one model thread owns the model and decodes every active request
//! in one batch ([`batcher`]). Endpoints: `/v1/chat/completions` and `/v1/completions` (whole or
//! streamed as server-sent events, with usage), `/v1/models`, `/health`, `/metrics`
//! (Prometheus), and Vertex AI's `AIP_HEALTH_ROUTE` / `AIP_PREDICT_ROUTE` on `AIP_HTTP_PORT`.
#![warn(missing_docs)]

pub mod api;
mod args;
pub mod batcher;
pub mod bench;
pub mod client;
pub mod error;
pub mod metrics;
pub mod openai;
pub mod prefix_cache;
pub mod router;
pub mod served;
pub mod state;
pub mod vertex;

pub use args::{run, ServeArgs};
pub use error::{ApiError, ServeError};

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::batcher::{run_model_thread, BatchLimits};
use crate::metrics::Metrics;
use crate::router::{router, VertexRoutes};
use crate::served::ServedModel;
use crate::state::AppState;

/// How the server runs, besides the model.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Most sequences decoded together.
    pub max_batch: usize,
    /// Largest request body in bytes (413 beyond).
    pub body_limit: usize,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Bearer token required on `/v1/*`.
    pub api_key: Option<String>,
    /// Vertex AI routes.
    pub vertex: VertexRoutes,
    /// Bytes of prompt KV caches kept to reuse shared prefixes (0 turns reuse off).
    pub prefix_cache_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_batch: 8,
            body_limit: 1 << 20,
            default_max_tokens: 512,
            api_key: None,
            vertex: VertexRoutes::from_env(),
            prefix_cache_bytes: prefix_cache::DEFAULT_MB << 20,
        }
    }
}

/// A server running on its own threads.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// Shared metrics.
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), ServeError>>>,
}

impl RunningServer {
    /// Stops accepting connections, lets in-flight requests and streams finish, and waits.
    pub fn stop(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.wait()
    }

    /// Waits until the server stops (on Ctrl-C or SIGTERM, or [`Self::stop`]).
    pub fn wait(mut self) -> Result<(), ServeError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(ServeError::Io("the server thread panicked".into())),
            None => Ok(()),
        }
    }
}

/// Starts serving `model` on `listener`: the model thread and an HTTP runtime of its own.
pub fn start(
    model: ServedModel,
    listener: std::net::TcpListener,
    opts: ServerOptions,
) -> Result<RunningServer, ServeError> {
    let addr = listener.local_addr().map_err(|e| ServeError::Io(e.to_string()))?;
    listener.set_nonblocking(true).map_err(|e| ServeError::Io(e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
    let lm = model.lm;
    let max_context = lm.config().max_position_embeddings.min(32_768);
    let (queue, rx) = std::sync::mpsc::channel();
    let mut accepted = vec![model.id.clone()];
    accepted.extend(model.aliases);
    let state = Arc::new(AppState {
        model_id: model.id,
        accepted_names: accepted,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        tokenizer: lm.tokenizer.clone(),
        template: lm.chat_template.clone(),
        max_context,
        default_max_tokens: opts.default_max_tokens,
        queue,
        metrics: metrics.clone(),
        api_key: opts.api_key.clone(),
    });
    let limits = BatchLimits {
        max_batch: opts.max_batch.max(1),
        max_context,
        prefix_cache_bytes: opts.prefix_cache_bytes,
    };
    let m = metrics.clone();
    let model_thread = std::thread::Builder::new()
        .name("medalign-model".into())
        .spawn(move || run_model_thread(lm, rx, limits, m))
        .map_err(|e| ServeError::Io(e.to_string()))?;
    let (tx, stop) = oneshot::channel::<()>();
    let app = router(state, &opts.vertex, opts.body_limit);
    let thread = std::thread::Builder::new()
        .name("medalign-http".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| ServeError::Io(e.to_string()))?;
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .map_err(|e| ServeError::Io(e.to_string()))?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal(stop))
                    .await
                    .map_err(|e| ServeError::Io(e.to_string()))
            });
            // The router (and with it the queue's sender) is gone: the model thread drains and ends.
            let joined =
                model_thread.join().map_err(|_| ServeError::Io("the model thread panicked".into()));
            served.and(joined)
        })
        .map_err(|e| ServeError::Io(e.to_string()))?;
    Ok(RunningServer { addr, metrics, shutdown: Some(tx), thread: Some(thread) })
}

async fn shutdown_signal(stop: oneshot::Receiver<()>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => eprintln!("shutting down: finishing in-flight requests"),
        _ = term => eprintln!("shutting down: finishing in-flight requests"),
        _ = stop => {}
    }
}
