//! Reuse of computed prompt prefixes (vLLM's automatic prefix caching, llama.cpp's
//! `cache_prompt`): the KV cache of each prefilled prompt is kept, and a new request whose
//! prompt starts with the same tokens (the chat template's system turn, a shared instruction, a
//! conversation's earlier turns) copies those positions instead of computing them again.
//!
//! A position's keys and values depend only on the tokens up to it, and the kernels compute each
//! row on its own, so a prompt continued from a copied prefix gets the logits it gets prefilled
//! whole. Entries are dropped least recently used first when their bytes pass the budget.

use std::collections::VecDeque;

use medalign_model::KvCache;

/// Shortest shared prefix worth copying: below this, computing the tokens costs about what
/// copying their cache does.
pub const MIN_REUSE: usize = 4;

/// Recently prefilled prompts and their caches, most recently used first.
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

    /// A copy of the longest cached prefix of `prompt` (at least [`MIN_REUSE`] tokens), or `None`.
    /// At least two of the prompt's tokens are left to compute: one new token alone goes through
    /// the decoding attention kernel, whose sums run in another order than the prefill's, and
    /// the answer could then differ from the prompt's answer prefilled whole.
    pub fn lookup(&mut self, prompt: &[u32]) -> Option<KvCache> {
        let usable = prompt.len().saturating_sub(2);
        let (at, n) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (tokens, cache))| (i, common_prefix(tokens, prompt).min(usable).min(cache.len())))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        if n < MIN_REUSE {
            return None;
        }
        let entry = self.entries.remove(at)?;
        let copy = entry.1.prefix(n).ok();
        self.entries.push_front(entry);
        copy
    }

    /// Keeps `cache`, which holds exactly `prompt`'s positions, evicting the least recently used
    /// entries past the budget. A prompt that an entry already covers is not stored twice.
    pub fn insert(&mut self, prompt: &[u32], cache: &KvCache) {
        if self.budget == 0 || cache.len() != prompt.len() {
            return;
        }
        if let Some(i) = self.entries.iter().position(|(t, _)| t.len() >= prompt.len() && t[..prompt.len()] == *prompt) {
            let entry = self.entries.remove(i).expect("found above");
            self.entries.push_front(entry);
            return;
        }
        // An entry this prompt extends is superseded by it.
        self.entries.retain(|(t, c)| {
            let covered = t.len() < prompt.len() && prompt[..t.len()] == t[..];
            if covered {
                self.bytes -= c.bytes();
            }
            !covered
        });
        let Ok(copy) = cache.prefix(prompt.len()) else { return };
        self.bytes += copy.bytes();
        self.entries.push_front((prompt.to_vec(), copy));
        while self.bytes > self.budget {
            let Some((_, c)) = self.entries.pop_back() else { break };
            self.bytes -= c.bytes();
        }
    }

    /// Bytes of keys and values held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Prompts held.
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
        LanguageModel::load_location(ModelLocation::SafetensorsDir(dir.path().to_path_buf()), &opts).unwrap()
    }

    fn filled(lm: &LanguageModel, prompt: &[u32]) -> KvCache {
        let mut c = lm.model.kv_cache();
        lm.model.forward_last(&Tensor::new(prompt, &Device::Cpu).unwrap().unsqueeze(0).unwrap(), Some(&mut c), None).unwrap();
        c
    }

    #[test]
    fn finds_the_longest_shared_prefix_short_of_the_whole_prompt() {
        let cfg = model();
        let mut pc = PrefixCache::new(1 << 30);
        let a = [1u32, 2, 3, 4, 5, 6, 7, 8];
        let b = [1u32, 2, 3, 4, 5, 9, 9];
        pc.insert(&a, &filled(&cfg, &a));
        pc.insert(&b, &filled(&cfg, &b));
        assert_eq!(pc.len(), 2);
        assert_eq!(pc.lookup(&[1, 2, 3, 4, 5, 6, 7, 0, 0]).map(|c| c.len()), Some(7));
        assert_eq!(pc.lookup(&[1, 2, 3, 4, 5, 9, 9, 9, 9]).map(|c| c.len()), Some(7));
        // The same prompt again: all but its last two tokens.
        assert_eq!(pc.lookup(&a).map(|c| c.len()), Some(6));
        // Too short a match, or none.
        assert!(pc.lookup(&[1, 2, 3, 0, 0, 0]).is_none());
        assert!(pc.lookup(&[7, 7, 7, 7, 7]).is_none());
        // A prompt that extends an entry replaces it.
        let longer = [1u32, 2, 3, 4, 5, 9, 9, 10, 11];
        pc.insert(&longer, &filled(&cfg, &longer));
        assert_eq!(pc.len(), 2);
        assert_eq!(pc.lookup(&[1, 2, 3, 4, 5, 9, 9, 10, 11, 12, 13]).map(|c| c.len()), Some(9));
    }

    #[test]
    fn evicts_the_least_recently_used_past_its_budget() {
        let cfg = model();
        let one = filled(&cfg, &[1, 2, 3, 4, 5]).bytes();
        let mut pc = PrefixCache::new(2 * one);
        for p in [[1u32, 2, 3, 4, 5], [2, 2, 3, 4, 5], [3, 2, 3, 4, 5]] {
            if p[0] == 3 {
                // Touch the first, so the second is the oldest.
                assert!(pc.lookup(&[1, 2, 3, 4, 5, 6, 7]).is_some());
            }
            pc.insert(&p, &filled(&cfg, &p));
        }
        assert_eq!((pc.len(), pc.bytes()), (2, 2 * one));
        assert!(pc.lookup(&[2, 2, 3, 4, 5, 6, 7]).is_none());
        assert!(pc.lookup(&[1, 2, 3, 4, 5, 6, 7]).is_some());
        assert!(PrefixCache::new(0).lookup(&[1, 2, 3, 4, 5, 6, 7]).is_none());
    }
}
