//! The per-request reply cache on disk: one JSON file per request key under `<dir>/<ab>/<key>.json`,
//! written atomically (temp file in the same folder, then rename), so a run killed at any moment
//! leaves only complete entries and a rerun or resume sends nothing already answered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::llm::request::ChatReply;

/// Replies by request key, on disk.
#[derive(Debug)]
pub struct ReplyCache {
    dir: PathBuf,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ReplyCache {
    /// A cache rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ReplyCache { dir: dir.into(), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// Where the cache lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2.min(key.len())]).join(format!("{key}.json"))
    }

    /// The cached reply, counting a hit or a miss. An unreadable entry is a miss (and is overwritten
    /// by the next answer).
    pub fn get(&self, key: &str) -> Option<ChatReply> {
        let found = std::fs::read(self.path(key))
            .ok()
            .and_then(|b| serde_json::from_slice::<ChatReply>(&b).ok());
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores a reply atomically.
    pub fn put(&self, key: &str, reply: &ChatReply) -> Result<(), String> {
        let path = self.path(key);
        let dir = path.parent().expect("entry has a folder");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let bytes = serde_json::to_vec(reply).expect("reply serializes");
        medalign_engine::write_atomic(&path, &bytes).map_err(|e| e.to_string())
    }

    /// Drops an entry, so the request is asked again next time: for replies that came back but were
    /// rejected (a judge verdict that failed validation is no answer to keep).
    pub fn forget(&self, key: &str) -> Result<(), String> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Lookups answered from disk so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to ask the backend so far.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_new_cache_and_count() {
        let dir = tempfile::tempdir().unwrap();
        let reply = ChatReply {
            text: "yes".into(),
            prompt_tokens: Some(3),
            completion_tokens: Some(1),
            finish_reason: None,
        };
        let a = ReplyCache::new(dir.path());
        assert_eq!(a.get("abcd"), None);
        a.put("abcd", &reply).unwrap();
        let b = ReplyCache::new(dir.path());
        assert_eq!(b.get("abcd"), Some(reply));
        assert_eq!((a.hits(), a.misses(), b.hits(), b.misses()), (0, 1, 1, 0));
        std::fs::write(dir.path().join("ab").join("abcd.json"), "{trunc").unwrap();
        assert_eq!(b.get("abcd"), None);
    }
}
