//! An artifact's `manifest.json`: how it was made, what it holds, and the hashes of its files.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::error::{IoContext, Result};
use crate::key::Ingredients;

/// Version of the record layout.
pub const RECORD_FORMAT: &str = "medalign-artifact/1";

/// The record of one published artifact.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// [`RECORD_FORMAT`].
    pub format: String,
    /// The cache key (the directory name).
    pub key: String,
    /// The pipeline whose run produced it.
    pub pipeline: String,
    /// The stage id in that manifest.
    pub stage: String,
    /// Everything the key was computed from.
    #[serde(flatten)]
    pub ingredients: Ingredients,
    /// Each output with its content hash and files.
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Figures the stage reported.
    pub metrics: BTreeMap<String, Json>,
    /// Warnings the stage reported (absent from records written before warnings existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Start time (RFC 3339).
    pub started: String,
    /// End time (RFC 3339).
    pub finished: String,
    /// Wall seconds the stage ran.
    pub seconds: f64,
    /// `medalign-engine <version>`.
    pub tool_version: String,
    /// Host name of the machine that ran it.
    pub host: String,
}

/// The folder inside an output that holds the record of a run rather than the artifact: timings,
/// logs, TensorBoard events. It is stored and listed with the output but left out of its content
/// hash, so a rerun that makes the same artifact leaves its consumers cached.
pub const RUN_RECORD_DIR: &str = "_run";

/// One output directory of an artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Its artifact kind.
    pub kind: String,
    /// BLAKE3 over the sorted (path, file hash) list of [`Self::files`]: equal bytes, equal hash.
    pub hash: String,
    /// Its files.
    pub files: Vec<FileRecord>,
    /// The files of its run record ([`RUN_RECORD_DIR`]), outside the hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_files: Vec<FileRecord>,
}

/// One file of an output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the output directory, with `/`.
    pub path: String,
    /// Size.
    pub bytes: u64,
    /// BLAKE3 of the content.
    pub hash: String,
}

/// Hashes every file of an output directory (in parallel) and the directory as a whole, but for
/// its run record, whose files are listed apart.
pub fn hash_output(dir: &Path, kind: &str) -> Result<OutputRecord> {
    let mut paths = Vec::new();
    collect_files(dir, dir, &mut paths)?;
    paths.sort();
    let (run_paths, paths): (Vec<String>, Vec<String>) =
        paths.into_iter().partition(|p| p.split('/').next() == Some(RUN_RECORD_DIR));
    let files = file_records(dir, &paths)?;
    let run_files = file_records(dir, &run_paths)?;
    let mut h = blake3::Hasher::new();
    h.update(b"medalign-output/1");
    for f in &files {
        h.update(&(f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update(f.hash.as_bytes());
    }
    Ok(OutputRecord {
        kind: kind.to_string(),
        hash: h.finalize().to_hex().to_string(),
        files,
        run_files,
    })
}

fn file_records(dir: &Path, paths: &[String]) -> Result<Vec<FileRecord>> {
    paths
        .par_iter()
        .map(|rel| {
            let full = dir.join(rel);
            let bytes = std::fs::metadata(&full).at(&full)?.len();
            Ok(FileRecord { path: rel.clone(), bytes, hash: crate::filehash::hash_file(&full)? })
        })
        .collect()
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let path = e.path();
        if e.file_type().at(&path)?.is_dir() {
            collect_files(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(
                rel.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/"),
            );
        }
    }
    Ok(())
}

/// Now, as RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// This machine's host name (records, lock owners).
pub(crate) fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_hash_depends_on_content_and_names_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("x.txt"), "x").unwrap();
            std::fs::write(d.join("sub/y.txt"), "y").unwrap();
        }
        let ha = hash_output(a.path(), "k").unwrap();
        assert_eq!(ha, hash_output(b.path(), "k").unwrap());
        assert_eq!(
            ha.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["sub/y.txt", "x.txt"]
        );
        std::fs::write(b.path().join("x.txt"), "X").unwrap();
        assert_ne!(ha.hash, hash_output(b.path(), "k").unwrap().hash);
    }

    #[test]
    fn the_run_record_is_listed_but_not_hashed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("weights.bin"), "w").unwrap();
        let before = hash_output(d.path(), "k").unwrap();
        std::fs::create_dir_all(d.path().join("_run/tensorboard")).unwrap();
        std::fs::write(d.path().join("_run/tensorboard/events.1"), "t=1").unwrap();
        let after = hash_output(d.path(), "k").unwrap();
        assert_eq!((after.hash.as_str(), after.files.len()), (before.hash.as_str(), 1));
        assert_eq!(
            after.run_files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
            ["_run/tensorboard/events.1"]
        );
        std::fs::write(d.path().join("_run/tensorboard/events.1"), "t=2").unwrap();
        assert_eq!(hash_output(d.path(), "k").unwrap().hash, before.hash);
        // A folder named so below the top level is content.
        std::fs::create_dir_all(d.path().join("sub/_run")).unwrap();
        std::fs::write(d.path().join("sub/_run/x"), "x").unwrap();
        assert_ne!(hash_output(d.path(), "k").unwrap().hash, before.hash);
    }
}
