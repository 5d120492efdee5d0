//! The LLM on candle: Llama, Mistral and Qwen2 decoders loaded from GGUF or safetensors, LoRA in
//! PEFT's format, the tokenizer and chat template of a checkpoint, generation with a KV cache,
//! and log-likelihood scoring. Train, eval, judge, pair and serve all run on this crate.
#![warn(missing_docs)]

pub mod bert;
pub mod chat_template;
pub mod checkpoint;
pub mod config;
mod error;
pub mod fetch;
pub mod fused_ce;
pub mod generation;
pub mod kv_cache;
pub mod layers;
pub mod lora;
pub mod losses;
pub mod mask;
mod precomputed;
pub mod pretrained;
pub mod process;
pub mod quant;
pub mod resolve;
pub mod scoring;
pub mod testing;
pub mod tokenizer;
pub mod train_attention;
pub mod transformer;
pub mod weights;

pub use chat_template::{ChatTemplate, Message};
pub use config::{Architecture, Config};
pub use error::{Error, Result};
pub use generation::{generate, Generation, GenerationConfig, SamplingParams};
pub use kv_cache::KvCache;
pub use lora::{LoraAdapter, LoraConfig, TargetModule};
pub use losses::{causal_lm_loss, dpo_loss};
pub use pretrained::{LanguageModel, LoadOptions};
pub use resolve::{resolve_model, ModelLocation};
pub use scoring::{score_tokens, sequence_logprobs, LogLikelihood};
pub use tokenizer::Tokenizer;
pub use transformer::Model;
pub use weights::{LinearFormat, Weights};
