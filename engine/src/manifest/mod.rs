//! Reading manifests: the positioned YAML tree, vars, and the raw (unresolved) manifest.

pub mod raw;
pub mod vars;
pub mod yaml;
