//! The `generate` stage kind: candidate responses to each prompt from named generators (a model at
//! some setting, or the dataset's own reference or rejected answer), written as `candidates`.

mod candidates;
mod config;
mod prompt;

pub use candidates::{candidates_schema, read_candidates, write_candidates, Candidate};
pub use config::{CandidateSource, GenerateConfig, GeneratorConfig};
pub use prompt::{prompt_of, reference_system};

/// The `candidates` artifact kind.
pub const CANDIDATES: medalign_engine::ArtifactKind = medalign_engine::ArtifactKind {
    name: "candidates",
    doc: "candidate responses: prompt id, prompt turns, generator, sampling params, response, token counts",
    schema_json: Some(include_str!("../../../schemas/candidates.json")),
};
