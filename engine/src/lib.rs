//! The MedAlign engine: manifest -> validated plan -> DAG -> cached execution -> lineage.
//!
//! It knows nothing of LLMs: stage kinds plug in through [`StageConfig`] and a [`KindRegistry`].
#![warn(missing_docs)]

pub mod bench;
mod diagnostic;
mod error;
mod exec;
mod executor;
mod filehash;
mod gc;
mod key;
mod kind;
mod lineage;
pub mod logs;
pub mod manifest;
mod owner;
mod params;
mod plan;
mod progress;
mod reason;
mod record;
mod redact;
mod report;
mod resolve;
mod resources;
mod run_context;
mod schema_check;
mod slurm;
mod status;
mod store;
pub mod testkit;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use error::{EngineError, Result};
pub use exec::{default_jobs, RunOptions};
pub use executor::{run, Executor, JobCommand};
pub use filehash::{hash_file, StatCache};
pub use gc::{gc, live_keys, GcReport};
pub use key::{FileIngredient, Ingredients, InputIngredient, KEY_FORMAT};
pub use kind::{
    Arity, ArtifactKind, CheckContext, DynKind, InputFile, InputSlot, KindRegistry, OutputSlot,
    ParamError, ParamsError, Stage, StageConfig, StageError, TABLE_FILE,
};
pub use lineage::{lineage, render_dot, render_mermaid, render_text, LineageEdge, LineageNode};
pub use params::did_you_mean;
pub use plan::{compile, load, Binding, Plan, PlannedStage};
pub use progress::{ProgressMode, RunProgress, StageProgress};
pub use reason::Change;
pub use record::{
    hash_output, now_rfc3339, ArtifactRecord, FileRecord, OutputRecord, RECORD_FORMAT,
    RUN_RECORD_DIR,
};
pub use redact::{redact, register_secret, REDACTED};
pub use report::{table, BatchJob, StageReport, StageStatus};
pub use resources::Resources;
pub use run_context::{InputArtifact, RunContext};
pub use schema_check::check_table_schema;
pub use slurm::run_job;
pub use status::{dry_run, status};
pub use store::{write_atomic, KeyLock, Pin, StageRef, Store, RECORD_FILE};
