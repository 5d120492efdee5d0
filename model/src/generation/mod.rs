//! Text generation with a KV cache: sampling (greedy, temperature, top-k, top-p, repetition
//! penalty, seed), stop strings, token streaming, several sequences in one batch.

mod decode;
mod sampling;

pub use decode::{generate, stable_prefix, FinishReason, Generation, GenerationConfig, TokenEvent};
pub use sampling::{Sampler, SamplingParams};
