//! The stage kinds of the MedAlign pipeline, each in its own module, plugged into the engine with
//! [`register`].
#![warn(missing_docs)]

pub mod dedupe;
pub mod eval;
pub mod export;
pub mod files;
pub mod generate;
pub mod ingest;
pub mod judge;
pub mod kinds;
pub mod llm;
mod model_params;
pub mod pair;
pub mod precision;
pub mod quantize;
pub mod register;
mod sample;
pub mod table;
pub mod train;

use medalign_engine::KindRegistry;

/// Registers every stage kind and artifact kind of this crate.
pub fn register(registry: &mut KindRegistry) {
    for kind in kinds::ALL {
        registry.artifact(kind);
    }
    registry
        .register::<ingest::IngestConfig>()
        .register::<dedupe::DedupeConfig>()
        .register::<generate::GenerateConfig>()
        .register::<judge::JudgeConfig>()
        .register::<pair::PairConfig>()
        .register::<eval::EvalConfig>()
        .register::<register::RegisterConfig>()
        .register::<quantize::QuantizeConfig>()
        .register::<export::ExportConfig>()
        .register::<train::TrainConfig>()
        .register::<train::ReferenceLogprobsConfig>();
}
