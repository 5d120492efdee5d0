//! BERT as a sentence encoder (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional
//! Transformers"; Reimers and Gurevych 2019, "Sentence-BERT"): the encoder in candle's shape, mean
//! pooling over real tokens and L2 normalization, which is what sentence-transformers' all-MiniLM-L6-v2
//! computes.

pub mod config;
pub mod encoder;
pub mod model;
pub mod pooling;
#[cfg(test)]
mod tests;

pub use config::{BertConfig, HiddenAct};
pub use encoder::{SentenceEncoder, DEFAULT_MAX_SEQ_LEN};
pub use model::BertModel;
pub use pooling::{l2_normalize, mean_pool};
