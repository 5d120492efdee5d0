//! Stage logs in the store: `<store>/logs/<stage>-<key>.log` is the output of the process that
//! built the key (a batch job's log), kept beside the artifact and linked from `lineage`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::store::Store;

/// Where the log of `stage` building `key` goes.
pub fn path(store: &Store, stage: &str, key: &str) -> PathBuf {
    store.root().join("logs").join(format!("{stage}-{key}.log"))
}

/// Gives the log this process writes (`from`) its name beside the artifact, replacing the log of an
/// earlier attempt: a hard link, so the writer goes on writing into it (a rename where the
/// filesystem has no links). Nothing to do when `from` does not exist.
pub(crate) fn link(store: &Store, from: &Path, stage: &str, key: &str) -> Result<()> {
    if !from.exists() {
        return Ok(());
    }
    let to = path(store, stage, key);
    let dir = to.parent().expect("logs/ has a parent");
    fs::create_dir_all(dir).at(dir)?;
    match fs::remove_file(&to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).at(&to),
        _ => {}
    }
    fs::hard_link(from, &to).or_else(|_| fs::rename(from, &to)).at(&to)
}
