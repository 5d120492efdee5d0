//! Quantized frozen bases for QLoRA: NF4 with double quantization (and ggml Q8_0/Q4_0), stored in
//! one safetensors file and plugged into the model as candle quantized tensors whose frozen
//! matmul dequantizes on the fly and passes gradients to its input.

mod nf4;
mod source;
mod storage;

pub use nf4::{BlockScales, Nf4Tensor, QuantError, DOUBLE_QUANT_GROUP, NF4_LEVELS};
pub use source::{is_projection, tensor_names, QuantFormat, QuantizedModel, QuantizedWeight};
pub use storage::{nf4_qtensor, Nf4Storage};
