//! Key locks that hold across machines: `locks/<key>.owner`, created with O_EXCL (atomic on local
//! filesystems and NFS v3 and later), says who builds the key: host, pid and Slurm job. Others
//! wait while that owner is alive and take the lock over once it is not: on the same host when its
//! pid is gone, on another host when its Slurm job has left the queue. An owner on another host
//! outside Slurm cannot be checked, so it is waited for (remove its file if it is known dead).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, IoContext, Result};

/// How often a waiter looks at the owner again.
const POLL: Duration = Duration::from_millis(250);

/// An owner file younger than this that does not parse is still being written.
const WRITING: Duration = Duration::from_secs(10);

/// Who holds a key's lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// The Slurm job it runs in (`SLURM_JOB_ID`), if any.
    pub job: Option<String>,
}

impl Owner {
    fn me() -> Owner {
        Owner {
            host: crate::record::host(),
            pid: std::process::id(),
            job: std::env::var("SLURM_JOB_ID").ok().filter(|j| !j.is_empty()),
        }
    }

    /// Whether the owner may still be running: see the module doc.
    fn alive(&self) -> bool {
        if self.host == crate::record::host() {
            return crate::store::process_alive(self.pid);
        }
        match &self.job {
            Some(job) => crate::slurm::queue::job_alive(job),
            None => true,
        }
    }

    /// `pid 12 on node3, job 4501`, for messages.
    pub fn describe(&self) -> String {
        let job = self.job.as_ref().map(|j| format!(", job {j}")).unwrap_or_default();
        format!("pid {} on {}{job}", self.pid, self.host)
    }
}

/// A held owner file, removed when dropped (if it is still this process's).
#[derive(Debug)]
pub struct OwnerFile {
    path: PathBuf,
    text: String,
}

impl Drop for OwnerFile {
    fn drop(&mut self) {
        if fs::read_to_string(&self.path).is_ok_and(|t| t == self.text) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates the owner file at `path`, waiting while a live owner has it; `on_wait` is told who.
pub(crate) fn acquire(path: &Path, on_wait: &mut dyn FnMut(&Owner)) -> Result<OwnerFile> {
    let text = serde_json::to_string(&Owner::me()).expect("owner serializes");
    let mut told = false;
    loop {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).at(path)?;
                return Ok(OwnerFile { path: path.to_path_buf(), text });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(EngineError::io(path, e)),
        }
        let Some(raw) = read(path)? else { continue };
        match serde_json::from_str::<Owner>(&raw) {
            Ok(owner) if owner.alive() => {
                if !std::mem::replace(&mut told, true) {
                    on_wait(&owner);
                }
                std::thread::sleep(POLL);
            }
            Err(_) if younger_than(path, WRITING) => std::thread::sleep(POLL),
            _ => take_over(path, &raw)?,
        }
    }
}

/// The owner of `path` if it is alive (gc asks before freeing a key).
pub(crate) fn live(path: &Path) -> Result<Option<Owner>> {
    let Some(raw) = read(path)? else { return Ok(None) };
    Ok(serde_json::from_str::<Owner>(&raw).ok().filter(Owner::alive))
}

/// Removes a dead owner's file, unless someone replaced it since it was read as `raw`.
fn take_over(path: &Path, raw: &str) -> Result<()> {
    let me = Owner::me();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("owner");
    let stale = path.with_file_name(format!(".{name}.{}.{}.stale", me.host, me.pid));
    match fs::rename(path, &stale) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EngineError::io(path, e)),
    }
    if read(&stale)?.is_some_and(|now| now != raw) {
        // A live owner took it over between the read and the rename: give it back.
        let _ = fs::hard_link(&stale, path);
    }
    fs::remove_file(&stale).at(&stale)
}

fn read(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io(path, e)),
    }
}

fn younger_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_owner_is_taken_over_and_a_live_one_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.owner");
        let dead = Owner { host: crate::record::host(), pid: u32::MAX - 1, job: None };
        fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        let held = acquire(&path, &mut |o| panic!("waited for dead {o:?}")).unwrap();
        assert_eq!(live(&path).unwrap(), Some(Owner::me()));
        let waiter = std::thread::spawn({
            let path = path.clone();
            move || {
                let mut waited = None;
                let _lock = acquire(&path, &mut |o| waited = Some(o.describe())).unwrap();
                waited
            }
        });
        std::thread::sleep(Duration::from_millis(600));
        drop(held);
        let waited = waiter.join().unwrap().expect("the second taker waited");
        assert!(waited.starts_with(&format!("pid {}", std::process::id())), "{waited}");
        assert!(!path.exists(), "released on drop");
    }
}
