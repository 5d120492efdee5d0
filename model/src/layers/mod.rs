//! The building blocks shared by every architecture: projections that carry LoRA, RMSNorm and RoPE.
//! Each picks candle's fast kernel at inference and a differentiable path when gradients flow.

mod decode_attention;
mod frozen_matmul;
mod fused;
mod linear;
mod norm;
mod qmatvec;
mod qpacked;
mod rope;

pub use decode_attention::decode_attention;
pub use frozen_matmul::{frozen_matmul, generation_kernels};
pub use fused::FusedLinear;
pub use linear::Linear;
pub use norm::RmsNorm;
pub use rope::RotaryEmbedding;
