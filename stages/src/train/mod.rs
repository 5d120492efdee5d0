//! The `train` stage kind (SFT and DPO with LoRA over a frozen, optionally quantized base) and
//! the `reference_logprobs` kind that caches DPO's reference scores.

pub mod batch;
pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod dpo;
pub mod load;
pub mod metrics;
pub mod optimizer;
pub mod reference;
mod stage;
pub mod trainer;

pub use config::{LoraParams, Method, TrainConfig};
pub use reference::ReferenceLogprobsConfig;
pub use trainer::{Objective, StepReport, Trainer};
