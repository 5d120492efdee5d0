//! The Slurm commands the executor runs, and what it reads from them: `sbatch` submits, `squeue`
//! says what is queued or running (and where), `scontrol`/`sacct` how a job ended, `scancel` stops.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::error::{EngineError, Result};

/// A job still in the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Queued {
    /// PENDING, RUNNING, COMPLETING, SUSPENDED...
    pub state: String,
    /// Its node once it runs.
    pub node: Option<String>,
}

/// How a job that left the queue ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    /// COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL...
    pub state: String,
    /// `exit:signal`, as Slurm writes it.
    pub exit: String,
}

/// Errors unless `sbatch` can be run: the slurm executor needs a Slurm client on this host.
pub(crate) fn require_client() -> Result<()> {
    match Command::new("sbatch").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err(EngineError::Usage(
            "the slurm executor needs `sbatch` on PATH (a Slurm client); use --executor local to \
             run here"
                .into(),
        )),
    }
}

/// Submits a batch script with `sbatch --parsable <args>`; the job id, or what sbatch said.
pub(crate) fn submit(args: &[String], script: &str) -> std::result::Result<String, String> {
    let mut child = Command::new("sbatch")
        .arg("--parsable")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sbatch: {e}"))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| format!("sbatch: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `id` or `id;cluster`.
    match stdout.trim().split(';').next() {
        Some(id) if out.status.success() && !id.is_empty() => Ok(id.to_string()),
        _ => Err(format!("sbatch failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
    }
}

/// The jobs among `ids` still in the queue; an error when the controller does not answer.
pub(crate) fn queued(ids: &[String]) -> std::result::Result<BTreeMap<String, Queued>, String> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let out = run(Command::new("squeue").args(["-h", "-o", "%i|%T|%N", "-j", &ids.join(",")]))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Every id has left the controller's memory.
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        return Err(format!("squeue: {}", stderr.trim()));
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_squeue(text: &str) -> BTreeMap<String, Queued> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, state, node) = (f.next()?, f.next()?, f.next().unwrap_or_default());
            let node = (!node.is_empty()).then(|| node.to_string());
            Some((id.to_string(), Queued { state: state.to_string(), node }))
        })
        .collect()
}

/// How job `id` ended: from the controller (`scontrol`, while it remembers the job), else from
/// accounting (`sacct`); `None` if neither knows it yet.
pub(crate) fn ended(id: &str) -> Option<Ended> {
    let scontrol = run(Command::new("scontrol").args(["-o", "show", "job", id])).ok();
    let text = scontrol.filter(|o| o.status.success()).map(|o| o.stdout).unwrap_or_default();
    let fields = String::from_utf8_lossy(&text).into_owned();
    let field = |name: &str| {
        fields.split_whitespace().find_map(|f| f.strip_prefix(name)).map(str::to_string)
    };
    if let (Some(state), Some(exit)) = (field("JobState="), field("ExitCode=")) {
        return Some(Ended { state, exit }).filter(|e| finished(&e.state));
    }
    let sacct =
        run(Command::new("sacct").args(["-n", "-P", "-X", "-o", "State,ExitCode", "-j", id]))
            .ok()?;
    let text = String::from_utf8_lossy(&sacct.stdout);
    let (state, exit) = text.lines().next()?.split_once('|')?;
    // `CANCELLED by 0` -> `CANCELLED`.
    let state = state.split_whitespace().next()?.to_string();
    Some(Ended { state, exit: exit.to_string() }).filter(|e| finished(&e.state))
}

/// Whether a job state is final.
fn finished(state: &str) -> bool {
    !matches!(
        state,
        "PENDING"
            | "RUNNING"
            | "CONFIGURING"
            | "COMPLETING"
            | "SUSPENDED"
            | "REQUEUED"
            | "RESIZING"
    )
}

/// Cancels jobs (those already ended are no error).
pub(crate) fn cancel(ids: &[String]) {
    if !ids.is_empty() {
        let _ = run(Command::new("scancel").args(ids));
    }
}

/// Whether job `id` is still queued or running; true when Slurm cannot be asked (a lock owner is
/// never taken over on a guess).
pub(crate) fn job_alive(id: &str) -> bool {
    match queued(&[id.to_string()]) {
        Ok(q) => q.contains_key(id),
        Err(_) => true,
    }
}

fn run(cmd: &mut Command) -> std::result::Result<Output, String> {
    cmd.stdin(Stdio::null()).output().map_err(|e| format!("{:?}: {e}", cmd.get_program()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_lines_parse_with_and_without_a_node() {
        let q = parse_squeue("12|PENDING|\n13|RUNNING|node7\n");
        assert_eq!(q["12"], Queued { state: "PENDING".into(), node: None });
        assert_eq!(q["13"].node.as_deref(), Some("node7"));
    }
}
