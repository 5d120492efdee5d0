//! A server started on a tiny random model (`medalign_model::testing`) on a free loopback port.

#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;

pub use medalign_model::testing::{write_tiny_model, CONTEXT};
use medalign_server::served::ServedModel;
use medalign_server::{start, RunningServer, ServerOptions};

/// A running server on the tiny model, with its directory kept alive.
pub struct TinyServer {
    /// The server.
    pub server: RunningServer,
    /// The served id.
    pub model: String,
    _dir: tempfile::TempDir,
}

impl TinyServer {
    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }
}

/// Starts a server on a fresh tiny model.
pub fn tiny_server(opts: ServerOptions) -> TinyServer {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_model(dir.path()).unwrap();
    let spec = dir.path().to_string_lossy().into_owned();
    let model = medalign_server::served::load(&spec, &dir.path().join("no-store")).unwrap();
    let id = model.id.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    TinyServer { server: start(model, listener, opts).unwrap(), model: id, _dir: dir }
}

/// Starts a server on an already loaded model.
pub fn serve(model: ServedModel, opts: ServerOptions) -> RunningServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    start(model, listener, opts).unwrap()
}

/// Options with the default Vertex routes whatever the environment says.
pub fn options() -> ServerOptions {
    ServerOptions {
        vertex: medalign_server::router::VertexRoutes {
            health: "/health".into(),
            predict: "/predict".into(),
        },
        ..ServerOptions::default()
    }
}
