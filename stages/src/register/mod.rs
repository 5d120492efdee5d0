//! The `register` stage kind: a model version recorded in the store's registry (the
//! `medalign-registry` crate), its files copied into the artifact and pinned through gc; plus the
//! Vertex AI bundle.

mod config;
pub mod vertex;

pub use config::RegisterConfig;
pub use vertex::VertexParams;

mod stage;
#[cfg(test)]
mod tests;
