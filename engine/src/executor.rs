//! Which executor runs a plan's stages: `local` (threads of this process, the default) or `slurm`
//! (one batch job per stage); [`run`] hands the plan to the one chosen.

use std::sync::Arc;

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::exec::RunOptions;
use crate::kind::KindRegistry;
use crate::plan::Plan;
use crate::report::StageReport;

/// Where stages run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// In this process, independent stages on threads.
    #[default]
    Local,
    /// Each stage that must run is a Slurm batch job, submitted from this process.
    Slurm,
}

impl Executor {
    /// The names `executor:` and `--executor` take.
    pub const NAMES: &[&str] = &["local", "slurm"];

    /// The executor of a name.
    pub fn from_name(name: &str) -> Option<Executor> {
        match name {
            "local" => Some(Executor::Local),
            "slurm" => Some(Executor::Slurm),
            _ => None,
        }
    }
}

impl std::str::FromStr for Executor {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Executor::from_name(s).ok_or_else(|| {
            format!("unknown executor \"{s}\" (one of: {})", Executor::NAMES.join(", "))
        })
    }
}

/// Runs the plan with the executor the options name, else the manifest's; one report per stage,
/// in plan order. Failed stages are reports, not errors.
pub fn run(plan: &Plan, registry: &KindRegistry, opts: &RunOptions) -> Result<Vec<StageReport>> {
    match opts.executor.unwrap_or(plan.executor) {
        Executor::Local if opts.detach => {
            Err(EngineError::Usage("--detach needs the slurm executor (--executor slurm)".into()))
        }
        Executor::Local => crate::exec::run_local(plan, registry, opts),
        Executor::Slurm => crate::slurm::run(plan, opts),
    }
}

/// How a batch job runs one stage: given the stage id and whether it is forced, the argv of a
/// process that runs that stage alone, in the same manifest and store (for the `medalign` binary,
/// `medalign run <manifest> --job-stage <id>`).
#[derive(Clone)]
pub struct JobCommand(pub Arc<dyn Fn(&str, bool) -> Vec<String> + Send + Sync>);

impl std::fmt::Debug for JobCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobCommand({:?})", (self.0)("<stage>", false))
    }
}
