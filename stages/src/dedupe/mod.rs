//! The `dedupe` stage kind: quality filters, eval-set decontamination, exact, MinHash/LSH and
//! semantic (sentence-embedding) near-duplicate removal, a clinical-relevance filter, with a record
//! of every removed row.

pub mod config;
pub mod contamination;
pub mod minhash;
pub mod pass;
pub mod quality;
pub mod semantic;
mod stage;
pub mod text;

pub use config::{DecontaminateConfig, DedupeConfig, NearConfig};
pub use pass::{dedupe, dedupe_with, Outcome};
pub use quality::QualityConfig;
pub use semantic::{Embedder, RelevanceConfig, SemanticConfig};
