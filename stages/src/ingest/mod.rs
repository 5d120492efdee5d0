//! The `ingest` stage kind and one parser per public dataset format.
//!
//! Each format module is a pure function from a file's text to parsed records; [`stage`] reads the
//! sources, fills ids and provenance, and writes the `examples` and `rejected` tables.

pub mod alpaca;
pub mod chat;
pub mod config;
pub mod csv_rows;
pub mod decode;
pub mod generic;
pub mod meddialog;
pub mod medmcqa;
pub mod medqa;
pub mod medsafetybench;
pub mod mmlu;
pub mod normalize;
pub mod preference;
pub mod pubmedqa;
pub mod record;
pub mod source;
pub mod stage;

pub use config::{IngestConfig, OnError};
pub use generic::FieldMap;
pub use record::{FileError, FileInput, Parsed, RecordError};
pub use source::{Format, Source};
pub use stage::{Counts, Ingested};
