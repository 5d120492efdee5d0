//! LoRA (Hu et al. 2021, <https://arxiv.org/abs/2106.09685>) with rsLoRA scaling (Kalajdzievski
//! 2023, <https://arxiv.org/abs/2312.03732>), saved and loaded in PEFT's format.

mod adapter;
mod config;
mod layer;

pub use adapter::{LoraAdapter, ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
pub use config::{LoraConfig, TargetModule};
pub use layer::LoraLayer;
