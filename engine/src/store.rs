//! The content-addressed artifact store on disk.
//!
//! ```text
//! <store>/artifacts/<key>/<output>/...   published outputs, never modified
//! <store>/artifacts/<key>/manifest.json  the artifact's record, written last
//! <store>/tmp/<key>.<pid>/               a run being staged (invisible until renamed)
//! <store>/work/<key>/                    checkpoints that survive a killed run of that key
//! <store>/locks/<key>.lock               one writer per key (flock; the OS frees it when a holder dies)
//! <store>/locks/<key>.owner              one writer per key across hosts (O_EXCL; see owner.rs)
//! <store>/locks/<key>.use                shared by each run using the key until it ends, exclusive to gc
//! <store>/refs/<pipeline>/<stage>.json   the key each manifest stage last resolved to (gc roots)
//! <store>/pins/<name>.json               keys a registered model needs (gc roots)
//! <store>/statcache.json                 input-file hashes by stat
//! <store>/cache/<name>/                  caches stages share across runs (e.g. LLM answers)
//! <store>/logs/<stage>-<key>.log         the output of the batch job that built a key
//! <store>/jobs/...                       batch jobs submitted and their results (slurm/record.rs)
//! ```

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, IoContext, Result};
use crate::owner::OwnerFile;
use crate::record::ArtifactRecord;

/// Name of the record file inside an artifact directory.
pub const RECORD_FILE: &str = "manifest.json";

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).at(dir)?;
    // Host and pid: writers on other machines of a shared store must not share a temp file.
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        crate::record::host(),
        std::process::id()
    ));
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    drop(f);
    fs::rename(&tmp, path).at(path)
}

/// Where the latest resolution of a manifest stage points.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageRef {
    /// The artifact key.
    pub key: String,
    /// When it was written (RFC 3339).
    pub at: String,
}

/// Keys a registered model keeps alive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pin {
    /// The pinned artifact keys.
    pub keys: Vec<String>,
    /// Why (e.g. `registered medalign-smollm2 v3`).
    pub note: String,
}

/// A store directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// A hold on one of a key's locks, released on drop (or by the OS when the process dies; the
/// owner file of a build lock is taken over by the next builder then, see owner.rs).
#[derive(Debug)]
pub struct KeyLock {
    _file: File,
    _owner: Option<OwnerFile>,
}

impl Store {
    /// Opens (creating) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for sub in ["artifacts", "tmp", "work", "locks", "refs", "pins", "building"] {
            let d = root.join(sub);
            fs::create_dir_all(&d).at(&d)?;
        }
        Ok(Store { root })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a published artifact.
    pub fn artifact_dir(&self, key: &str) -> PathBuf {
        self.root.join("artifacts").join(key)
    }

    /// The checkpoint directory of a key (created).
    pub fn work_dir(&self, key: &str) -> Result<PathBuf> {
        let d = self.root.join("work").join(key);
        fs::create_dir_all(&d).at(&d)?;
        Ok(d)
    }

    /// Every checkpoint directory: (key, path).
    pub fn work_dirs(&self) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.root.join("work");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if let Some(name) = e.file_name().to_str() {
                out.push((name.to_string(), e.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The record of a published artifact, if there is one.
    pub fn record(&self, key: &str) -> Result<Option<ArtifactRecord>> {
        let path = self.artifact_dir(key).join(RECORD_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::Store(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(EngineError::io(path, e)),
        }
    }

    /// Whether a key is published (its record exists: the record is written last).
    pub fn contains(&self, key: &str) -> bool {
        self.artifact_dir(key).join(RECORD_FILE).is_file()
    }

    /// Every published key.
    pub fn keys(&self) -> Result<Vec<String>> {
        let dir = self.root.join("artifacts");
        let mut keys = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if let Some(name) = e.file_name().to_str() {
                if !name.starts_with('.') {
                    keys.push(name.to_string());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The unique published key starting with `prefix` (at least 4 hex digits).
    pub fn resolve_prefix(&self, prefix: &str) -> Result<Option<String>> {
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let hits: Vec<String> =
            self.keys()?.into_iter().filter(|k| k.starts_with(prefix)).collect();
        match hits.len() {
            0 => Ok(None),
            1 => Ok(hits.into_iter().next()),
            n => Err(EngineError::Usage(format!(
                "key prefix {prefix} is ambiguous ({n} artifacts); give more digits"
            ))),
        }
    }

    /// Marks `key` in use until the hold is dropped: a shared lock on `locks/<key>.use`, which gc
    /// needs exclusive to free anything of the key. A run takes it before looking the key up and
    /// keeps it to its end; it waits only while gc is freeing the key. Holds never conflict with each
    /// other, nor with [`Store::lock`], so a run can build a key it holds and read it afterwards.
    pub fn hold(&self, key: &str) -> Result<KeyLock> {
        let (path, file) = self.lock_file(key, "use")?;
        file.lock_shared().at(&path)?;
        Ok(KeyLock { _file: file, _owner: None })
    }

    /// Both locks of `key`, exclusive, if no run holds the key ([`Store::hold`]) and none builds it
    /// ([`Store::lock`], here or on another host): gc frees a key under them.
    pub fn try_lock(&self, key: &str) -> Result<Option<(KeyLock, KeyLock)>> {
        let Some(used) = self.try_lock_file(key, "use")? else { return Ok(None) };
        let Some(built) = self.try_lock_file(key, "lock")? else { return Ok(None) };
        Ok(crate::owner::live(&self.owner_file(key))?.is_none().then_some((used, built)))
    }

    /// Whether a run holds or builds `key` now (what makes [`Store::try_lock`] refuse), asked the
    /// way a dry run must: no lock file is created and none is kept.
    pub fn in_use(&self, key: &str) -> Result<bool> {
        for ext in ["use", "lock"] {
            let path = self.root.join("locks").join(format!("{key}.{ext}"));
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(EngineError::io(path, e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => return Ok(true),
                Err(fs::TryLockError::Error(e)) => return Err(EngineError::io(path, e)),
            }
        }
        Ok(crate::owner::live(&self.owner_file(key))?.is_some())
    }

    fn try_lock_file(&self, key: &str, ext: &str) -> Result<Option<KeyLock>> {
        let (path, file) = self.lock_file(key, ext)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file, _owner: None })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(EngineError::io(path, e)),
        }
    }

    fn lock_file(&self, key: &str, ext: &str) -> Result<(PathBuf, File)> {
        let path = self.root.join("locks").join(format!("{key}.{ext}"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        Ok((path, file))
    }

    /// Takes the lock of `key`, waiting for another process that holds it; `on_wait` is told who
    /// (`pid 12` here, `pid 12 on node3, job 4501` elsewhere). Two locks: a flock, which the OS
    /// frees when its holder dies, then the owner file, which reaches across hosts.
    pub fn lock(&self, key: &str, on_wait: impl FnOnce(&str)) -> Result<KeyLock> {
        let mut on_wait = Some(on_wait);
        let mut tell = |who: &str| on_wait.take().map(|f| f(who)).unwrap_or_default();
        let (path, mut file) = self.lock_file(key, "lock")?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                tell(&format!("pid {}", holder.trim()));
                file.lock().at(&path)?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(EngineError::io(path, e)),
        }
        file.set_len(0).at(&path)?;
        write!(file, "{}", std::process::id()).at(&path)?;
        let owner = crate::owner::acquire(&self.owner_file(key), &mut |o| tell(&o.describe()))?;
        Ok(KeyLock { _file: file, _owner: Some(owner) })
    }

    fn owner_file(&self, key: &str) -> PathBuf {
        self.root.join("locks").join(format!("{key}.owner"))
    }

    /// A fresh staging directory for `key`, removing what killed runs of it left (call under its lock).
    pub fn staging(&self, key: &str) -> Result<PathBuf> {
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).at(&tmp)? {
            let e = e.at(&tmp)?;
            if e.file_name().to_str().is_some_and(|n| n.starts_with(&format!("{key}."))) {
                fs::remove_dir_all(e.path()).at(e.path())?;
            }
        }
        let d = tmp.join(format!("{key}.{}", std::process::id()));
        fs::create_dir_all(&d).at(&d)?;
        Ok(d)
    }

    /// Makes a staged artifact visible: record written last, everything fsync'd, one rename.
    /// A previous artifact of the same key (a forced rerun) is replaced.
    pub fn publish(&self, staging: &Path, record: &ArtifactRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("record serializes");
        sync_tree(staging)?;
        let rec = staging.join(RECORD_FILE);
        let mut f = File::create(&rec).at(&rec)?;
        f.write_all(&bytes).at(&rec)?;
        f.sync_all().at(&rec)?;
        File::open(staging).and_then(|d| d.sync_all()).at(staging)?;
        let dest = self.artifact_dir(&record.key);
        if dest.exists() {
            let old = self.root.join("tmp").join(format!(
                "{}.{}.replaced",
                record.key,
                std::process::id()
            ));
            fs::rename(&dest, &old).at(&dest)?;
            fs::remove_dir_all(&old).at(&old)?;
        }
        fs::rename(staging, &dest).at(&dest)?;
        let parent = self.root.join("artifacts");
        File::open(&parent).and_then(|d| d.sync_all()).at(&parent)?;
        let work = self.root.join("work").join(&record.key);
        if work.exists() {
            fs::remove_dir_all(&work).at(&work)?;
        }
        Ok(())
    }

    /// Removes a published artifact (gc).
    pub fn remove(&self, key: &str) -> Result<()> {
        let dir = self.artifact_dir(key);
        let trash = self.root.join("tmp").join(format!("{key}.{}.gc", std::process::id()));
        fs::rename(&dir, &trash).at(&dir)?;
        fs::remove_dir_all(&trash).at(&trash)
    }

    /// The key a manifest stage last resolved to.
    pub fn read_ref(&self, pipeline: &str, stage: &str) -> Option<StageRef> {
        let path = self.root.join("refs").join(pipeline).join(format!("{stage}.json"));
        fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Records the key a manifest stage resolved to (a no-op when it already points there).
    pub fn write_ref(&self, pipeline: &str, stage: &str, key: &str) -> Result<()> {
        if self.read_ref(pipeline, stage).is_some_and(|r| r.key == key) {
            return Ok(());
        }
        self.write_stage_ref("refs", pipeline, stage, key)
    }

    /// Records that `stage` of `pipeline` started building `key`: gc keeps that key's checkpoints
    /// (a killed run resumes from them) until the stage starts another key, i.e. its inputs or
    /// params changed.
    pub fn mark_building(&self, pipeline: &str, stage: &str, key: &str) -> Result<()> {
        self.write_stage_ref("building", pipeline, stage, key)
    }

    /// The key each stage of each pipeline last started building.
    pub fn building(&self) -> Result<Vec<String>> {
        Ok(self.stage_refs("building")?.into_iter().map(|(_, _, r)| r.key).collect())
    }

    /// Every ref in the store: (pipeline, stage, ref).
    pub fn refs(&self) -> Result<Vec<(String, String, StageRef)>> {
        self.stage_refs("refs")
    }

    /// Points `<dir>/<pipeline>/<stage>.json` at `key`, now.
    fn write_stage_ref(&self, dir: &str, pipeline: &str, stage: &str, key: &str) -> Result<()> {
        let r = StageRef { key: key.to_string(), at: crate::record::now_rfc3339() };
        let path = self.root.join(dir).join(pipeline).join(format!("{stage}.json"));
        write_atomic(&path, &serde_json::to_vec_pretty(&r).expect("ref serializes"))
    }

    /// Every `<dir>/<pipeline>/<stage>.json`: (pipeline, stage, ref).
    fn stage_refs(&self, dir: &str) -> Result<Vec<(String, String, StageRef)>> {
        let mut out = Vec::new();
        for (pipeline, path) in json_files_in_subdirs(&self.root.join(dir))? {
            let bytes = fs::read(&path).at(&path)?;
            let r: StageRef = serde_json::from_slice(&bytes)
                .map_err(|e| EngineError::Store(format!("{}: {e}", path.display())))?;
            let stage = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
            out.push((pipeline, stage, r));
        }
        Ok(out)
    }

    /// Pins keys under `name` so gc keeps them and their lineage.
    pub fn pin(&self, name: &str, pin: &Pin) -> Result<()> {
        let path = self.root.join("pins").join(format!("{name}.json"));
        write_atomic(&path, &serde_json::to_vec_pretty(pin).expect("pin serializes"))
    }

    /// Every pin: (name, pin).
    pub fn pins(&self) -> Result<Vec<(String, Pin)>> {
        let dir = self.root.join("pins");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let path = e.at(&dir)?.path();
            if path.extension().is_some_and(|x| x == "json") {
                let bytes = fs::read(&path).at(&path)?;
                let pin: Pin = serde_json::from_slice(&bytes)
                    .map_err(|e| EngineError::Store(format!("{}: {e}", path.display())))?;
                out.push((path.file_stem().unwrap().to_string_lossy().into_owned(), pin));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The file of the input-file stat cache.
    pub fn stat_cache_file(&self) -> PathBuf {
        self.root.join("statcache.json")
    }

    /// Staging and trash directories in `tmp/` whose process is gone (work directories are gc's
    /// to judge, by their key).
    pub fn leftovers(&self) -> Result<Vec<PathBuf>> {
        let tmp = self.root.join("tmp");
        let mut out = Vec::new();
        for e in fs::read_dir(&tmp).at(&tmp)? {
            let e = e.at(&tmp)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            // Listed, then found dead: it may have published (renamed the directory) and exited between.
            if pid.is_none_or(|p| !process_alive(p)) && e.path().exists() {
                out.push(e.path());
            }
        }
        Ok(out)
    }
}

/// Whether a store can live at `root`: the directory, or the nearest folder above it that exists,
/// must be a writable directory. Says what is wrong for the manifest's diagnostic.
pub fn check_usable(root: &Path) -> std::result::Result<(), String> {
    let mut dir = root;
    loop {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => return writable(dir),
            Ok(_) if dir == root => return Err("is not a directory".into()),
            Ok(_) => {
                return Err(format!("cannot be created: {} is not a directory", dir.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match dir.parent() {
                Some(up) if !up.as_os_str().is_empty() => dir = up,
                _ => return Err(format!("cannot be created: {e}")),
            },
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether this process may create files in `dir` (permissions, read-only mounts).
fn writable(dir: &Path) -> std::result::Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| "the path holds a NUL byte".to_string())?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(format!("{} is not writable: {}", dir.display(), std::io::Error::last_os_error()))
    }
}

/// Whether a process with this pid exists (Linux: /proc; elsewhere assume it does).
pub(crate) fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

fn json_files_in_subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for sub in fs::read_dir(dir).at(dir)? {
        let sub = sub.at(dir)?;
        if !sub.file_type().at(sub.path())?.is_dir() {
            continue;
        }
        let name = sub.file_name().to_string_lossy().into_owned();
        for e in fs::read_dir(sub.path()).at(sub.path())? {
            let path = e.at(sub.path())?.path();
            if path.extension().is_some_and(|x| x == "json") {
                out.push((name.clone(), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// fsyncs every file and directory under `dir`.
fn sync_tree(dir: &Path) -> Result<()> {
    for e in fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let path = e.path();
        if e.file_type().at(&path)?.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).at(&path)?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = store.lock("k", |_| {}).unwrap();
        let path = dir.path().join("locks/k.lock");
        let other = File::options().write(true).open(&path).unwrap();
        assert!(matches!(other.try_lock(), Err(fs::TryLockError::WouldBlock)));
        drop(held);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn holds_share_the_key_with_each_other_and_its_builder_but_keep_gc_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let held = (store.hold("k").unwrap(), store.hold("k").unwrap());
        assert!(
            !store.in_use("j").unwrap() && !dir.path().join("locks/j.use").exists(),
            "asking creates nothing"
        );
        assert!(store.in_use("k").unwrap());
        let building =
            store.lock("k", |_| panic!("a hold must not make the builder wait")).unwrap();
        assert!(store.try_lock("k").unwrap().is_none(), "held and built");
        drop(held);
        assert!(store.try_lock("k").unwrap().is_none(), "still built");
        assert!(store.in_use("k").unwrap());
        drop(building);
        assert!(!store.in_use("k").unwrap());
        let gc = store.try_lock("k").unwrap().expect("no one holds k");
        let other = File::open(dir.path().join("locks/k.use")).unwrap();
        assert!(
            matches!(other.try_lock_shared(), Err(fs::TryLockError::WouldBlock)),
            "a hold waits for gc"
        );
        drop(gc);
        assert!(other.try_lock_shared().is_ok());
    }

    #[test]
    fn prefixes_resolve_uniquely() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for k in ["abcd01", "abcd02", "ef0123"] {
            fs::create_dir_all(store.artifact_dir(k)).unwrap();
        }
        assert_eq!(store.resolve_prefix("ef01").unwrap().as_deref(), Some("ef0123"));
        assert!(store.resolve_prefix("abcd").is_err());
        assert_eq!(store.resolve_prefix("abc").unwrap(), None);
    }
}
