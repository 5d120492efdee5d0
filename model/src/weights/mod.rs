//! Where weights come from: GGUF files, Hugging Face safetensors directories, or in-memory maps,
//! all seen through one [`Weights`] handle keyed by Hugging Face tensor names.

mod gguf;
mod safetensors;
mod source;

pub use gguf::GgufSource;
pub use safetensors::SafetensorsSource;
pub use source::{LinearFormat, TensorMapSource, WeightSource, Weights};
