//! The checkpoint's tokenizer: from `tokenizer.json` (+ `tokenizer_config.json`), or rebuilt from
//! GGUF metadata (byte-level BPE from tokens and merges; SentencePiece-style BPE for Llama/Mistral
//! vocabularies), with its special tokens.

mod gguf;
mod load;
mod stream;

pub use gguf::tokenizer_json_from_gguf;
pub use load::Tokenizer;
pub use stream::TextStream;
