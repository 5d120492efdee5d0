//! Semantic near-duplicates and clinical relevance from sentence embeddings (Sentence-BERT,
//! Reimers and Gurevych 2019; all-MiniLM-L6-v2 by default).
//!
//! Duplicates: rows are visited in priority order; a row whose embedding has cosine >= `threshold`
//! with an earlier kept row is removed (`semantic_duplicate`, the most similar kept row's id and the
//! cosine). The search is exact: each block of rows is compared with every kept row, rows in parallel.
//!
//! Relevance: a row's score is its largest cosine with the embeddings of the manifest's topic
//! descriptions; below `min_score` it is removed (`low_relevance`, the closest topic and the score).

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The embedding model used when `semantic.model` is not given.
pub const DEFAULT_MODEL: &str = "all-minilm-l6-v2";

/// Rows compared with the kept set at once; within a block, rows also meet the block's earlier keepers.
const BLOCK: usize = 256;

/// Semantic near-duplicate removal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SemanticConfig {
    /// Whether to embed rows and remove semantic near-duplicates (off by default: embedding costs
    /// about 20 ms a row on two cores).
    #[serde(default)]
    pub enabled: bool,
    /// The sentence encoder: a known name (`all-minilm-l6-v2`, fetched on first use) or a
    /// sentence-transformers directory (config.json, tokenizer.json, model.safetensors).
    #[serde(default = "default_model")]
    pub model: String,
    /// Cosine similarity at or above which a row duplicates an earlier kept row.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Texts per forward pass of the encoder.
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_model() -> String {
    DEFAULT_MODEL.into()
}
fn default_threshold() -> f64 {
    0.95
}
fn default_batch() -> usize {
    32
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            enabled: false,
            model: default_model(),
            threshold: default_threshold(),
            batch: default_batch(),
        }
    }
}

/// Clinical relevance: similarity to medical topic descriptions, embedded with `semantic.model`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RelevanceConfig {
    /// Topic descriptions, e.g. "drug dosing and interactions"; scoring is on when the list is not empty.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Remove rows whose best cosine with a topic is below this (`low_relevance`); keep all when absent.
    #[serde(default)]
    pub min_score: Option<f64>,
}

impl RelevanceConfig {
    /// Whether relevance is scored.
    pub fn enabled(&self) -> bool {
        !self.topics.is_empty()
    }
}

/// Turns texts into unit-length embeddings, in input order.
pub trait Embedder: Sync {
    /// Embeds `texts`; every vector has the same length and unit norm.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// The [`Embedder`] over a medalign-model [`SentenceEncoder`](medalign_model::bert::SentenceEncoder).
pub struct EncoderEmbedder {
    /// The loaded encoder.
    pub encoder: medalign_model::bert::SentenceEncoder,
    /// Texts per forward pass.
    pub batch: usize,
}

impl Embedder for EncoderEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.encoder.encode(texts, self.batch).map_err(|e| e.to_string())
    }
}

/// Dot product; for unit vectors, the cosine.
#[inline]
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // eight partial sums so the loop vectorizes
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// The most similar row of `kept` (rows of `dim` floats) to `v`, if its cosine is at least `threshold`.
fn best_match(v: &[f32], kept: &[f32], dim: usize, threshold: f32) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    for (k, row) in kept.chunks_exact(dim).enumerate() {
        let c = cosine(v, row);
        if c >= threshold && best.is_none_or(|(_, b)| c > b) {
            best = Some((k, c));
        }
    }
    best
}

/// Semantic duplicates among `candidates` (row indices in priority order, each with an embedding in
/// `emb`): `(row, kept row it matched, cosine)` for every row removed.
pub fn semantic_duplicates(
    candidates: &[usize],
    emb: &[Vec<f32>],
    threshold: f64,
) -> Vec<(usize, usize, f64)> {
    let Some(dim) = candidates.first().map(|&i| emb[i].len()) else { return Vec::new() };
    let t = threshold as f32;
    let mut kept_rows: Vec<usize> = Vec::new();
    let mut kept: Vec<f32> = Vec::new();
    let mut removed = Vec::new();
    for block in candidates.chunks(BLOCK) {
        let against_kept: Vec<Option<(usize, f32)>> =
            block.par_iter().map(|&i| best_match(&emb[i], &kept, dim, t)).collect();
        let start = kept_rows.len();
        for (&i, prior) in block.iter().zip(against_kept) {
            let within =
                best_match(&emb[i], &kept[start * dim..], dim, t).map(|(k, c)| (start + k, c));
            let best = match (prior, within) {
                (Some(a), Some(b)) => Some(if b.1 > a.1 { b } else { a }),
                (a, b) => a.or(b),
            };
            match best {
                Some((k, c)) => removed.push((i, kept_rows[k], f64::from(c))),
                None => {
                    kept_rows.push(i);
                    kept.extend_from_slice(&emb[i]);
                }
            }
        }
    }
    removed
}

/// Each embedding's best cosine with a topic, and that topic's index.
pub fn relevance(emb: &[&[f32]], topics: &[Vec<f32>]) -> Vec<(f64, usize)> {
    emb.par_iter()
        .map(|v| {
            topics.iter().enumerate().map(|(t, e)| (f64::from(cosine(v, e)), t)).fold(
                (f64::NEG_INFINITY, 0),
                |b, x| {
                    if x.0 > b.0 {
                        x
                    } else {
                        b
                    }
                },
            )
        })
        .collect()
}

/// Summary of relevance scores as metrics: count, mean, min, p10, p50, p90, max.
pub fn distribution(scores: &[f64]) -> Vec<(&'static str, f64)> {
    if scores.is_empty() {
        return Vec::new();
    }
    let mut s = scores.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| s[((s.len() - 1) as f64 * p).round() as usize];
    let round = |x: f64| (x * 1e4).round() / 1e4;
    vec![
        ("mean", round(s.iter().sum::<f64>() / s.len() as f64)),
        ("min", round(s[0])),
        ("p10", round(q(0.1))),
        ("p50", round(q(0.5))),
        ("p90", round(q(0.9))),
        ("max", round(s[s.len() - 1])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn dedupe_semantic_keeps_the_first_of_each_cluster() {
        let emb = vec![
            unit(&[1., 0., 0.]),
            unit(&[0., 1., 0.]),
            unit(&[1., 0.05, 0.]),
            unit(&[0., 1., 0.02]),
            unit(&[0., 0., 1.]),
        ];
        let got = semantic_duplicates(&[0, 1, 2, 3, 4], &emb, 0.95);
        assert_eq!(got.iter().map(|&(i, k, _)| (i, k)).collect::<Vec<_>>(), vec![(2, 0), (3, 1)]);
        // priority order decides which copy survives
        let got = semantic_duplicates(&[2, 0, 1, 3, 4], &emb, 0.95);
        assert_eq!(got.iter().map(|&(i, k, _)| (i, k)).collect::<Vec<_>>(), vec![(0, 2), (3, 1)]);
    }

    #[test]
    fn dedupe_semantic_blocks_match_across_and_within() {
        // 600 rows, 3 blocks: row j duplicates row j - 300
        let emb: Vec<Vec<f32>> = (0..600)
            .map(|j| {
                let mut v = vec![0f32; 300];
                v[j % 300] = 1.0;
                v
            })
            .collect();
        let order: Vec<usize> = (0..600).collect();
        let got = semantic_duplicates(&order, &emb, 0.99);
        assert_eq!(got.len(), 300);
        assert!(got.iter().all(|&(i, k, c)| i == k + 300 && (c - 1.0).abs() < 1e-6));
    }

    #[test]
    fn dedupe_relevance_is_the_best_topic() {
        let topics = vec![unit(&[1., 0.]), unit(&[0., 1.])];
        let a = unit(&[0.2, 1.]);
        let r = relevance(&[&a], &topics);
        assert_eq!(r[0].1, 1);
        assert!((r[0].0 - f64::from(a[1])).abs() < 1e-6);
        let d = distribution(&[0.1, 0.2, 0.3]);
        assert_eq!(d[0], ("mean", 0.2));
        assert_eq!(d[3], ("p50", 0.2));
    }
}
