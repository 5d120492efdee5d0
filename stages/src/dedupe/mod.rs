//! The `dedupe` stage kind: quality filters, eval-set decontamination, exact and MinHash/LSH
//! near-duplicate removal, with a record of every removed row.

pub mod config;
pub mod contamination;
pub mod minhash;
pub mod pass;
pub mod quality;
pub mod text;

pub use config::{DecontaminateConfig, DedupeConfig, NearConfig};
pub use pass::{dedupe, Outcome};
pub use quality::QualityConfig;
