//! Reuse of computed prompt prefixes (vLLM's automatic prefix caching, llama.cpp's
//! `cache_prompt`): the KV cache of each finished sequence is kept with its tokens, and a new
//! request whose prompt starts with the same tokens (the chat template's system turn, a shared
//! instruction, a conversation's earlier turns and answers) copies those positions instead of
//! computing them again.
//!
//! A position's keys and values depend only on the tokens up to it, and the generation kernels
//! compute each row on its own (attention included: every prompt row attends as a decoded token
//! would), so a prompt continued from a copied prefix gets the logits it gets prefilled whole. A finished sequence's cache is kept as it is, not copied. Entries are dropped least
//! recently used first when their bytes pass the budget, and their buffers handed back for new
//! sequences.

use std::collections::VecDeque;

use medalign_model::KvCache;

/// MiB of keys and values `serve` keeps for reuse unless told otherwise (`--prefix-cache-mb`).
pub const DEFAULT_MB: usize = 256;

/// Shortest shared prefix worth copying: below this, computing the tokens costs about what
/// copying their cache does.
pub const MIN_REUSE: usize = 4;

/// Recently finished sequences' tokens and caches, most recently used first.
pub struct PrefixCache {
    entries: VecDeque<(Vec<u32>, KvCache)>,
    budget: usize,
    bytes: usize,
}

impl PrefixCache {
    /// A cache holding at most `budget` bytes of keys and values (0 turns reuse off).
    pub fn new(budget: usize) -> Self {
        PrefixCache { entries: VecDeque::new(), budget, bytes: 0 }
    }

    /// Copies into `dst` (emptied first) the longest cached prefix of `prompt`, at least
    /// [`MIN_REUSE`] tokens, and returns its length (0 when none). The prompt's last token is
    /// always left to compute: its logits are the step's output.
    pub fn lookup(&mut self, prompt: &[u32], dst: &mut KvCache) -> usize {
        dst.reset();
        let usable = prompt.len().saturating_sub(1);
        let Some((at, n)) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (tokens, _))| (i, common_prefix(tokens, prompt).min(usable)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .filter(|&(_, n)| n >= MIN_REUSE)
        else {
            return 0;
        };
        let entry = self.entries.remove(at).expect("found above");
        let copied = entry.1.copy_prefix_into(n, dst).is_ok();
        self.entries.push_front(entry);
        if copied {
            n
        } else {
            dst.reset();
            0
        }
    }

    /// Keeps `cache`, whose positions are those of `tokens` (the extra tokens that were never
    /// fed are dropped). Returns the caches that leave: this one when an entry already covers
    /// its tokens or reuse is off, the entries it extends, and the least recently used past the
    /// budget; their buffers can serve new sequences.
    pub fn insert(&mut self, mut tokens: Vec<u32>, cache: KvCache) -> Vec<KvCache> {
        tokens.truncate(cache.len());
        if self.budget == 0 || tokens.len() < MIN_REUSE || tokens.len() != cache.len() {
            return vec![cache];
        }
        if let Some(i) = self
            .entries
            .iter()
            .position(|(t, _)| t.len() >= tokens.len() && t[..tokens.len()] == tokens[..])
        {
            let entry = self.entries.remove(i).expect("found above");
            self.entries.push_front(entry);
            return vec![cache];
        }
        let mut leaving = Vec::new();
        // Entries this sequence extends are superseded by it.
        let mut i = 0;
        while i < self.entries.len() {
            let t = &self.entries[i].0;
            if t.len() < tokens.len() && tokens[..t.len()] == t[..] {
                let (_, c) = self.entries.remove(i).expect("in range");
                self.bytes -= c.bytes();
                leaving.push(c);
            } else {
                i += 1;
            }
        }
        self.bytes += cache.bytes();
        self.entries.push_front((tokens, cache));
        while self.bytes > self.budget {
            let Some((_, c)) = self.entries.pop_back() else { break };
            self.bytes -= c.bytes();
            leaving.push(c);
        }
        leaving
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Sequences held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};
    use medalign_model::{LanguageModel, LinearFormat, LoadOptions, ModelLocation};

    fn model() -> LanguageModel {
        let dir = tempfile::tempdir().unwrap();
        medalign_model::testing::write_tiny_model(dir.path()).unwrap();
        let opts = LoadOptions { format: LinearFormat::F32, device: Device::Cpu };
        LanguageModel::load_location(ModelLocation::SafetensorsDir(dir.path().to_path_buf()), &opts)
            .unwrap()
    }

    fn filled(lm: &LanguageModel, prompt: &[u32]) -> KvCache {
        let mut c = lm.model.kv_cache();
        lm.model
            .forward_last(
                &Tensor::new(prompt, &Device::Cpu).unwrap().unsqueeze(0).unwrap(),
                Some(&mut c),
                None,
            )
            .unwrap();
        c
    }

    fn found(pc: &mut PrefixCache, lm: &LanguageModel, prompt: &[u32]) -> Option<usize> {
        let mut dst = lm.model.kv_cache();
        let n = pc.lookup(prompt, &mut dst);
        assert_eq!(dst.len(), n);
        (n > 0).then_some(n)
    }

    #[test]
    fn finds_the_longest_shared_prefix_short_of_the_whole_prompt() {
        let lm = model();
        let mut pc = PrefixCache::new(1 << 30);
        let a = [1u32, 2, 3, 4, 5, 6, 7, 8];
        let b = [1u32, 2, 3, 4, 5, 9, 9];
        assert!(pc.insert(a.to_vec(), filled(&lm, &a)).is_empty());
        // Tokens past the cache's positions (a last sampled token never fed) are dropped.
        assert!(pc.insert([&b[..], &[42]].concat(), filled(&lm, &b)).is_empty());
        assert_eq!(pc.len(), 2);
        assert_eq!(found(&mut pc, &lm, &[1, 2, 3, 4, 5, 6, 7, 0, 0]), Some(7));
        assert_eq!(found(&mut pc, &lm, &[1, 2, 3, 4, 5, 9, 9, 42, 42]), Some(7));
        // The same prompt again: all but its last token.
        assert_eq!(found(&mut pc, &lm, &a), Some(7));
        // Too short a match, or none.
        assert_eq!(found(&mut pc, &lm, &[1, 2, 3, 0, 0, 0]), None);
        assert_eq!(found(&mut pc, &lm, &[7, 7, 7, 7, 7]), None);
        // A sequence that extends an entry replaces it; one an entry covers is handed back.
        let longer = [1u32, 2, 3, 4, 5, 9, 9, 10, 11];
        assert_eq!(pc.insert(longer.to_vec(), filled(&lm, &longer)).len(), 1);
        assert_eq!(pc.len(), 2);
        assert_eq!(found(&mut pc, &lm, &[1, 2, 3, 4, 5, 9, 9, 10, 11, 12, 13]), Some(9));
        assert_eq!(pc.insert(b[..6].to_vec(), filled(&lm, &b[..6])).len(), 1);
        assert_eq!(pc.len(), 2);
    }

    #[test]
    fn evicts_the_least_recently_used_past_its_budget() {
        let lm = model();
        let one = filled(&lm, &[1, 2, 3, 4, 5]).bytes();
        let mut pc = PrefixCache::new(2 * one);
        for p in [[1u32, 2, 3, 4, 5], [2, 2, 3, 4, 5], [3, 2, 3, 4, 5]] {
            if p[0] == 3 {
                // Touch the first, so the second is the oldest.
                assert!(found(&mut pc, &lm, &[1, 2, 3, 4, 5, 6, 7]).is_some());
            }
            let left = pc.insert(p.to_vec(), filled(&lm, &p));
            assert_eq!(left.len(), usize::from(p[0] == 3));
        }
        assert_eq!((pc.len(), pc.bytes()), (2, 2 * one));
        assert!(found(&mut pc, &lm, &[2, 2, 3, 4, 5, 6, 7]).is_none());
        assert!(found(&mut pc, &lm, &[1, 2, 3, 4, 5, 6, 7]).is_some());
        let mut off = PrefixCache::new(0);
        assert_eq!(off.insert(vec![1, 2, 3, 4, 5], filled(&lm, &[1, 2, 3, 4, 5])).len(), 1);
        assert!(found(&mut off, &lm, &[1, 2, 3, 4, 5, 6, 7]).is_none());
    }
}
