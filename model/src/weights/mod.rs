//! Where weights come from: GGUF files, Hugging Face safetensors directories, or in-memory maps,
//! all seen through one [`Weights`] handle keyed by Hugging Face tensor names.

mod gguf;
mod gguf_writer;
mod safetensors;
mod source;

pub use gguf::GgufSource;
pub use gguf_writer::{metadata_from_config, metadata_from_gguf, write_gguf, GgufReport, GgufType};
pub use safetensors::SafetensorsSource;
pub use source::{LinearFormat, TensorMapSource, WeightSource, Weights};
