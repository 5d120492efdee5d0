//! MinHash signatures of word shingles and a banded LSH index over them (Broder 1997; Leskovec,
//! Rajaraman and Ullman, *Mining of Massive Datasets*, ch. 3), with `datasketch`'s choice of bands.
//!
//! Permutations are multiply-add-shift hashes of 32-bit shingle hashes, drawn from a seed, so the
//! same seed gives the same signatures on every machine.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::dedupe::text::{combine, mix};

/// Computes MinHash signatures with a fixed set of seeded permutations.
#[derive(Clone, Debug)]
pub struct MinHasher {
    shingle: usize,
    a: Vec<u64>,
    b: Vec<u64>,
}

/// SplitMix64: the seed stream that draws the permutations.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    mix(*state)
}

impl MinHasher {
    /// `permutations` hash functions over shingles of `shingle` words, drawn from `seed`.
    pub fn new(permutations: usize, shingle: usize, seed: u64) -> Self {
        let mut state = seed ^ 0x6d65_6461_6c69_676e; // "medalign"
        let a = (0..permutations).map(|_| splitmix(&mut state) | 1).collect();
        let b = (0..permutations).map(|_| splitmix(&mut state)).collect();
        MinHasher { shingle: shingle.max(1), a, b }
    }

    /// The number of permutations.
    pub fn permutations(&self) -> usize {
        self.a.len()
    }

    /// The 32-bit hashes of a word sequence's shingles; a text shorter than one shingle is one shingle.
    pub fn shingles(&self, words: &[u64]) -> Vec<u32> {
        if words.is_empty() {
            return Vec::new();
        }
        let k = self.shingle.min(words.len());
        words.windows(k).map(|w| combine(w) as u32).collect()
    }

    /// The signature of a word sequence (all `u32::MAX` when it has no words).
    pub fn signature(&self, words: &[u64]) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for x in self.shingles(words) {
            let x = x as u64;
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(x).wrapping_add(b) >> 32) as u32;
                *s = (*s).min(v);
            }
        }
        sig
    }
}

/// Exact Jaccard similarity of two sorted, repeat-free shingle sets.
pub fn set_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 {
        1.0
    } else {
        both as f64 / union as f64
    }
}

/// The sorted, repeat-free shingle set of a word sequence, for [`set_jaccard`].
pub fn shingle_set(hasher: &MinHasher, words: &[u64]) -> Vec<u32> {
    let mut s = hasher.shingles(words);
    s.sort_unstable();
    s.dedup();
    s
}

/// Estimated Jaccard similarity: the share of positions where two signatures agree.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    const N: usize = 200; // Simpson's rule, even number of intervals
    let h = (hi - lo) / N as f64;
    let inner: f64 =
        (1..N).map(|i| f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 }).sum();
    (f(lo) + f(hi) + inner) * h / 3.0
}

/// Bands and rows per band that minimize the weighted false-positive and false-negative areas for
/// `threshold`, as `datasketch.MinHashLSH` chooses them; `recall_weight` weighs the false negatives
/// (datasketch uses 0.5).
pub fn optimal_bands(threshold: f64, permutations: usize, recall_weight: f64) -> (usize, usize) {
    let mut best = (f64::INFINITY, (1, 1));
    for b in 1..=permutations {
        for r in 1..=permutations / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = integrate(p, 0.0, threshold);
            let fn_ = integrate(|s| 1.0 - p(s), threshold, 1.0);
            let err = (1.0 - recall_weight) * fp + recall_weight * fn_;
            if err < best.0 {
                best = (err, (b, r));
            }
        }
    }
    best.1
}

/// A hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by pre-mixed hashes.
pub type HashKeyed<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// Banded LSH: a signature lands in one bucket per band; two in a shared bucket are candidates.
#[derive(Clone, Debug)]
pub struct LshIndex {
    rows: usize,
    tables: Vec<HashKeyed<Vec<u32>>>,
}

impl LshIndex {
    /// An empty index of `bands` bands of `rows` signature positions each.
    pub fn new(bands: usize, rows: usize) -> Self {
        LshIndex { rows, tables: (0..bands).map(|_| HashKeyed::default()).collect() }
    }

    /// The bucket key of each band of `sig`.
    pub fn keys<'a>(&'a self, sig: &'a [u32]) -> impl Iterator<Item = u64> + 'a {
        (0..self.tables.len()).map(move |band| {
            let part = &sig[band * self.rows..(band + 1) * self.rows];
            let mut h = mix(band as u64 + 1);
            for &v in part {
                h = mix(h ^ v as u64);
            }
            h
        })
    }

    /// Adds item `id` under its band keys.
    pub fn insert(&mut self, sig: &[u32], id: u32) {
        let keys: Vec<u64> = self.keys(sig).collect();
        for (table, key) in self.tables.iter_mut().zip(keys) {
            table.entry(key).or_default().push(id);
        }
    }

    /// The items sharing at least one bucket with `sig`, sorted, without repeats.
    pub fn candidates(&self, sig: &[u32]) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for (table, key) in self.tables.iter().zip(self.keys(sig)) {
            if let Some(ids) = table.get(&key) {
                out.extend_from_slice(ids);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedupe::text::words;

    #[test]
    fn similar_texts_have_similar_signatures() {
        let m = MinHasher::new(128, 3, 7);
        let a = m.signature(&words("A 54-year-old man has crushing chest pain radiating to the left arm and jaw for two hours").hashes);
        let b = m.signature(&words("A 54-year-old man has crushing chest pain radiating to the left arm and jaw for three hours").hashes);
        let c = m.signature(
            &words("A 3-year-old girl has a barking cough and inspiratory stridor worse at night")
                .hashes,
        );
        assert!(jaccard(&a, &b) > 0.6, "{}", jaccard(&a, &b));
        assert!(jaccard(&a, &c) < 0.1, "{}", jaccard(&a, &c));
        assert_eq!(a, MinHasher::new(128, 3, 7).signature(&words("a 54 year old man has crushing chest pain radiating to the left arm and jaw for two hours").hashes));
        assert_ne!(a, MinHasher::new(128, 3, 8).signature(&words("A 54-year-old man has crushing chest pain radiating to the left arm and jaw for two hours").hashes));
    }

    #[test]
    fn bands_match_datasketch() {
        // datasketch's `_optimal_param(threshold, num_perm, 1 - w, w)` gives these.
        assert_eq!(optimal_bands(0.8, 128, 0.5), (9, 13));
        assert_eq!(optimal_bands(0.5, 128, 0.5), (25, 5));
        assert_eq!(optimal_bands(0.7, 256, 0.5), (25, 10));
        assert_eq!(optimal_bands(0.8, 128, 0.9), (14, 9));
    }

    #[test]
    fn index_finds_candidates() {
        let mut idx = LshIndex::new(4, 2);
        idx.insert(&[1, 2, 3, 4, 5, 6, 7, 8], 0);
        idx.insert(&[9, 9, 9, 9, 9, 9, 9, 9], 1);
        assert_eq!(idx.candidates(&[1, 2, 0, 0, 0, 0, 0, 0]), vec![0]);
        assert!(idx.candidates(&[0; 8]).is_empty());
    }
}
