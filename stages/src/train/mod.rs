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
pub use load::adapter_dir;
pub use reference::{ReferenceLogprobsConfig, REFERENCE_LOGPROBS};
pub use stage::{METRICS_FILE, TRAINED_EXAMPLES_FILE, TRAINING_CONFIG_FILE};
pub use trainer::{Hyper, Objective, ReferenceLogprobs, StepReport, Trainer};
