//! The building blocks shared by every architecture: projections that carry LoRA, RMSNorm and RoPE.
//! Each picks candle's fast kernel at inference and a differentiable path when gradients flow.

mod activation;
pub mod bf16_gemm;
mod decode_attention;
pub mod embedding;
mod frozen_matmul;
mod fused;
mod lanes;
mod linear;
mod lora_linear;
mod norm;
mod qmatvec;
mod qpacked;
mod ragged_attention;
mod rope;
pub mod softmax;
#[cfg(target_arch = "x86_64")]
mod vexp;

pub use activation::{silu_mul, silu_mul_halves};
pub use bf16_gemm::bf16_products;
pub use decode_attention::decode_attention;
pub use embedding::Embedding;
pub(crate) use frozen_matmul::weight_f32;
pub use frozen_matmul::{frozen_matmul, generation_kernels};
pub use fused::FusedLinear;
pub use linear::Linear;
pub use norm::RmsNorm;
pub use ragged_attention::ragged_attention;
pub use rope::RotaryEmbedding;
