//! Content hashes of files (BLAKE3; mmap and all cores for large files), with a stat cache keyed by
//! (path, size, mtime, inode) so an unchanged tree is not read again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};

/// Files at least this large are hashed with mmap across threads.
const PARALLEL_THRESHOLD: u64 = 16 << 20;

/// BLAKE3 of a file's content, as hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path).at(path)?.len();
    let mut h = blake3::Hasher::new();
    if len >= PARALLEL_THRESHOLD {
        h.update_mmap_rayon(path).at(path)?;
    } else {
        h.update_reader(std::fs::File::open(path).at(path)?).at(path)?;
    }
    Ok(h.finalize().to_hex().to_string())
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
    hash: String,
}

fn stamp_of(meta: &std::fs::Metadata) -> (u64, i128, u64) {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0;
    (meta.len(), mtime_ns, inode)
}

/// Remembers file hashes by stat, persisted as JSON in the store.
pub struct StatCache {
    file: PathBuf,
    entries: Mutex<BTreeMap<PathBuf, Stamp>>,
    dirty: Mutex<bool>,
}

impl StatCache {
    /// Loads the cache from `file` (empty when absent or unreadable: it is only a cache).
    pub fn load(file: PathBuf) -> Self {
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache { file, entries: Mutex::new(entries), dirty: Mutex::new(false) }
    }

    /// The file's content hash and size, read again only when its stat changed.
    pub fn hash(&self, path: &Path) -> Result<(String, u64)> {
        let meta = std::fs::metadata(path).at(path)?;
        let (size, mtime_ns, inode) = stamp_of(&meta);
        if let Some(s) = self.entries.lock().unwrap().get(path) {
            if s.size == size && s.mtime_ns == mtime_ns && s.inode == inode {
                return Ok((s.hash.clone(), size));
            }
        }
        let hash = hash_file(path)?;
        self.entries
            .lock()
            .unwrap()
            .insert(path.to_path_buf(), Stamp { size, mtime_ns, inode, hash: hash.clone() });
        *self.dirty.lock().unwrap() = true;
        Ok((hash, size))
    }

    /// Writes the cache back if it changed (atomically; losing it only costs re-reading files).
    pub fn save(&self) -> Result<()> {
        if !*self.dirty.lock().unwrap() {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(&*self.entries.lock().unwrap()).expect("stat cache serializes");
        crate::store::write_atomic(&self.file, &bytes)?;
        *self.dirty.lock().unwrap() = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cache_notices_edits() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let cache = StatCache::load(dir.path().join("stat.json"));
        let (h1, n) = cache.hash(&f).unwrap();
        assert_eq!((h1.as_str(), n), (blake3::hash(b"one").to_hex().as_str(), 3));
        std::fs::write(&f, "two!").unwrap();
        let (h2, _) = cache.hash(&f).unwrap();
        assert_eq!(h2, blake3::hash(b"two!").to_hex().to_string());
        cache.save().unwrap();
        let again = StatCache::load(dir.path().join("stat.json"));
        assert_eq!(again.hash(&f).unwrap().0, h2);
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("big.bin");
        let data: Vec<u8> =
            (0..(PARALLEL_THRESHOLD as usize + 12345)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&f, &data).unwrap();
        assert_eq!(hash_file(&f).unwrap(), blake3::hash(&data).to_hex().to_string());
    }
}
