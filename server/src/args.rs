//! `medalign serve`: the clap arguments and the function the binary calls.

use std::path::PathBuf;

use clap::Args;
use medalign_registry::DEFAULT_STORE;

use crate::error::ServeError;
use crate::router::VertexRoutes;
use crate::{served, start, ServerOptions};

/// Serve a model over an OpenAI-compatible HTTP API.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// A registered model (NAME, NAME@ALIAS, NAME:VERSION), a registered model directory, a GGUF
    /// file, a safetensors directory, or a known model name.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (Vertex AI sets AIP_HTTP_PORT).
    #[arg(long, env = "AIP_HTTP_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer <key>` on /v1/*, the key read from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// The store whose registry resolves model names.
    #[arg(long, env = "MEDALIGN_STORE", default_value = DEFAULT_STORE)]
    pub store: PathBuf,
    /// Most requests decoded together.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// max_tokens for requests that give none.
    #[arg(long, default_value_t = 512)]
    pub default_max_tokens: usize,
    /// MiB of prompt KV caches kept, so that a prompt sharing a prefix with an earlier one (a
    /// system prompt, earlier turns) computes only the rest; 0 turns reuse off.
    #[arg(long, default_value_t = crate::prefix_cache::DEFAULT_MB)]
    pub prefix_cache_mb: usize,
}

/// Loads the model, listens, and serves until Ctrl-C or SIGTERM (in-flight streams finish first).
pub fn run(args: &ServeArgs) -> Result<(), ServeError> {
    let api_key = match &args.api_key_env {
        Some(var) => Some(std::env::var(var).ok().filter(|k| !k.is_empty()).ok_or_else(|| {
            ServeError::Args(format!("--api-key-env {var}: the variable is unset or empty"))
        })?),
        None => None,
    };
    eprintln!("loading {}", args.model);
    let model = served::load(&args.model, &args.store)?;
    let id = model.id.clone();
    let listener = std::net::TcpListener::bind((args.host.as_str(), args.port))
        .map_err(|e| ServeError::Io(format!("{}:{}: {e}", args.host, args.port)))?;
    let vertex = VertexRoutes::from_env();
    let opts = ServerOptions {
        max_batch: args.max_batch,
        body_limit: args.max_body_bytes,
        default_max_tokens: args.default_max_tokens,
        api_key,
        vertex: vertex.clone(),
        prefix_cache_bytes: args.prefix_cache_mb << 20,
    };
    let server = start(model, listener, opts)?;
    eprintln!(
        "serving {id} on http://{}/v1 (health {}, predict {}, metrics /metrics); Ctrl-C stops",
        server.addr, vertex.health, vertex.predict
    );
    server.wait()
}
