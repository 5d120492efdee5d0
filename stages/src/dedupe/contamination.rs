//! Eval-set decontamination by n-gram overlap, as in GPT-3 (Brown et al. 2020, appendix C) and
//! lm-evaluation-harness: a training row that shares an n-gram (13 words by default) with an eval
//! item is contaminated.
//!
//! Eval items shorter than n words count as one n-gram of their own length, as long as they have at
//! least [`MIN_SHORT_WORDS`] words; shorter ones are too generic to match on.

use std::collections::BTreeSet;

use rayon::prelude::*;

use crate::dedupe::minhash::HashKeyed;
use crate::dedupe::text::combine;

/// The fewest words an eval item shorter than n must have to be matched as a whole.
pub const MIN_SHORT_WORDS: usize = 8;

/// The n-grams of a set of eval items, each pointing at the first item that has it.
pub struct EvalIndex {
    n: usize,
    grams: HashKeyed<u32>,
    lengths: BTreeSet<usize>,
    skipped: usize,
}

/// A training row's overlap with the eval set.
#[derive(Clone, Debug, PartialEq)]
pub struct Overlap {
    /// The eval item sharing the most n-grams with the row (the first such, on ties).
    pub eval: u32,
    /// Distinct n-grams of the row found in the eval set.
    pub matches: usize,
    /// Share of the row's n-grams found in the eval set.
    pub share: f64,
}

impl EvalIndex {
    /// Indexes eval items given as word hashes.
    pub fn new(n: usize, items: &[Vec<u64>]) -> Self {
        let n = n.max(1);
        let mut idx =
            EvalIndex { n, grams: HashKeyed::default(), lengths: BTreeSet::new(), skipped: 0 };
        let per_item: Vec<Vec<u64>> =
            items.par_iter().map(|w| grams(w, n, MIN_SHORT_WORDS)).collect();
        for (i, (gs, w)) in per_item.into_iter().zip(items).enumerate() {
            if gs.is_empty() {
                idx.skipped += 1;
                continue;
            }
            idx.lengths.insert(w.len().min(n));
            for g in gs {
                idx.grams.entry(g).or_insert(i as u32);
            }
        }
        idx
    }

    /// Eval items too short to match on.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// How `words` overlaps the eval set, if it needs `min_matches` shared n-grams or more.
    pub fn overlap(&self, words: &[u64], min_matches: usize) -> Option<Overlap> {
        if self.grams.is_empty() {
            return None;
        }
        let mut hits: Vec<(u64, u32)> = Vec::new();
        let mut total = 0usize;
        for &len in &self.lengths {
            if words.len() < len {
                continue;
            }
            for w in words.windows(len) {
                let g = combine(w);
                if len == self.n {
                    total += 1;
                }
                if let Some(&eval) = self.grams.get(&g) {
                    hits.push((g, eval));
                }
            }
        }
        hits.sort_unstable();
        hits.dedup();
        if hits.is_empty() || hits.len() < min_matches.max(1) {
            return None;
        }
        let mut evals: Vec<u32> = hits.iter().map(|&(_, e)| e).collect();
        evals.sort_unstable();
        // the most frequent eval item, the lowest index on ties
        let (mut best, mut best_count, mut i) = (evals[0], 0usize, 0usize);
        while i < evals.len() {
            let j = evals[i..].iter().position(|&e| e != evals[i]).map_or(evals.len(), |k| i + k);
            if j - i > best_count {
                best = evals[i];
                best_count = j - i;
            }
            i = j;
        }
        let share = hits.len() as f64 / total.max(1) as f64;
        Some(Overlap { eval: best, matches: hits.len(), share: share.min(1.0) })
    }
}

/// The n-gram hashes of one eval item; an item shorter than n is one gram if it has `min_short` words.
fn grams(words: &[u64], n: usize, min_short: usize) -> Vec<u64> {
    if words.len() >= n {
        words.windows(n).map(combine).collect()
    } else if words.len() >= min_short {
        vec![combine(words)]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::text::words;

    fn w(s: &str) -> Vec<u64> {
        words(s).hashes
    }

    #[test]
    fn a_leaked_question_is_found() {
        let eval = vec![
            w("A 23-year-old woman presents with fever, dysuria and flank pain. Which of the following is the most likely diagnosis?"),
            w("Which enzyme is deficient in classic phenylketonuria? Phenylalanine hydroxylase"),
        ];
        let idx = EvalIndex::new(13, &eval);
        let leak = w("Question: A 23-year-old woman presents with fever, dysuria and flank pain. Which of the following is the most likely diagnosis? Answer: pyelonephritis");
        let o = idx.overlap(&leak, 1).unwrap();
        assert_eq!(o.eval, 0);
        assert!(o.matches >= 5);
        let short = w("In classic phenylketonuria: which enzyme is deficient in classic phenylketonuria? Phenylalanine hydroxylase.");
        assert_eq!(idx.overlap(&short, 1).unwrap().eval, 1);
        let clean = w("A 23-year-old man presents with fever and a productive cough. Which of the following is the most likely organism?");
        assert_eq!(idx.overlap(&clean, 1), None);
    }

    #[test]
    fn tiny_eval_items_are_skipped() {
        let idx = EvalIndex::new(13, &[w("yes no maybe")]);
        assert_eq!(idx.skipped(), 1);
        assert_eq!(idx.overlap(&w("is it yes no maybe or not"), 1), None);
    }
}
