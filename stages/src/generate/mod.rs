//! The `generate` stage kind: candidate responses to each prompt from named generators (a model at
//! some setting, or the dataset's own reference or rejected answer), written as `candidates`.

mod config;
mod prompt;
mod stage;

pub use config::{CandidateSource, GenerateConfig, GeneratorConfig};
pub use prompt::reference_system;
