//! Text generation with a KV cache: sampling (greedy, temperature, top-k, top-p, repetition
//! penalty, seed), stop strings, token streaming, several sequences in one batch.

mod answer;
mod decode;
mod sampling;

pub use answer::AnswerText;
pub use decode::{generate, FinishReason, Generation, GenerationConfig, TokenEvent};
pub use sampling::{Sampler, SamplingParams};
