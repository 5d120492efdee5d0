//! [`Precision`]: how train and eval hold the model's weights and run its products.

use medalign_model::LinearFormat;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the weights are held and multiplied.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Whichever of `bf16` and `f32` multiplies faster on this CPU, measured once per machine
    /// (bf16 on AMD Zen 4, f32 on a Xeon whose f32 FMA ports match its bf16 dot products).
    Auto,
    /// float32 weights, products of many rows in bfloat16 with f32 accumulation where the CPU
    /// has AVX-512 BF16 (exact f32 elsewhere), as PyTorch autocast does.
    Bf16,
    /// float32 throughout (GGUF blocks dequantized), as `transformers` computes: the reference.
    F32,
    /// Quantized weights with 8-bit activations, as `medalign serve` and llama.cpp answer
    /// (inference only).
    Quantized,
}

impl Precision {
    /// Whether products run in bf16 on this machine.
    pub fn bf16(self) -> bool {
        use medalign_model::layers::bf16_gemm;
        match self {
            Precision::Auto => bf16_gemm::faster_than_f32(),
            Precision::Bf16 => bf16_gemm::available(),
            Precision::F32 | Precision::Quantized => false,
        }
    }

    /// How the model's projections are loaded.
    pub fn format(self) -> LinearFormat {
        match self {
            Precision::Quantized => LinearFormat::Quantized,
            Precision::Auto | Precision::Bf16 | Precision::F32 => LinearFormat::F32,
        }
    }
}
