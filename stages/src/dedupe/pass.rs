//! One dedupe pass over a table: quality filters, eval decontamination, exact duplicates, MinHash/LSH
//! near-duplicates, then (with an [`Embedder`]) semantic near-duplicates and clinical relevance, each
//! row removed at most once and always with a reason.
//!
//! Rows are visited in priority order (the `priority` list of sources, then input order), so the copy
//! that survives a duplicate group is the one from the most trusted source; kept rows stay in input order.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use rayon::prelude::*;

use crate::dedupe::config::DedupeConfig;
use crate::dedupe::contamination::EvalIndex;
use crate::dedupe::minhash::{
    optimal_bands, set_jaccard, shingle_set, LshIndex, MinHasher, PassThrough,
};
use crate::dedupe::semantic::{relevance, semantic_duplicates, Embedder};
use crate::dedupe::text::{exact_key, split_words, words};
use crate::kinds::examples::Example;
use crate::kinds::removed::Removal;

/// Why a row was removed, before it is written out.
#[derive(Clone, Debug)]
struct Verdict {
    reason: &'static str,
    matched: Option<String>,
    score: Option<f64>,
}

/// What the pass needs of a row's text.
struct RowText {
    /// The word hashes (empty unless decontamination or near-duplicate search reads them).
    hashes: Vec<u64>,
    /// Characters of the trimmed content text, for the length filters.
    chars: usize,
    /// The exact-duplicate key of the normalized words.
    key: u128,
}

/// What a pass produced.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The surviving rows, in input order.
    pub kept: Vec<Example>,
    /// The removed rows, in input order, with the reason and the id they matched.
    pub removed: Vec<Removal>,
    /// LSH bands and rows per band used.
    pub lsh: (usize, usize),
    /// Eval items too short to decontaminate against.
    pub eval_skipped: usize,
    /// Each kept row's best cosine with a relevance topic, aligned with `kept`, when relevance is on.
    pub relevance: Option<Vec<f64>>,
}

impl Outcome {
    /// How many rows were removed for `reason`.
    pub fn count(&self, reason: &str) -> usize {
        self.removed.iter().filter(|r| r.reason == reason).count()
    }
}

/// The order rows are visited in: by the rank of their source in `priority`, then by position.
pub fn priority_order(rows: &[Example], priority: &[String]) -> Vec<usize> {
    let rank: HashMap<&str, usize> =
        priority.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| {
        (rank.get(rows[i].source.as_str()).copied().unwrap_or(priority.len()), i)
    });
    order
}

/// Runs the pass without the embedding steps (`semantic`, `relevance`), which need an [`Embedder`]:
/// see [`dedupe_with`]. `seed` draws the MinHash permutations.
pub fn dedupe(cfg: &DedupeConfig, rows: Vec<Example>, eval: &[Example], seed: u64) -> Outcome {
    match dedupe_with(cfg, rows, eval, seed, None) {
        Ok(out) => out,
        Err(e) => unreachable!("only embedding fails, and there is no embedder: {e}"),
    }
}

/// Runs the pass; with `embedder`, also the `semantic` and `relevance` steps the config enables.
/// Fails only when the embedder does.
pub fn dedupe_with(
    cfg: &DedupeConfig,
    rows: Vec<Example>,
    eval: &[Example],
    seed: u64,
    embedder: Option<&dyn Embedder>,
) -> Result<Outcome, String> {
    // Word hashes are kept only for the steps that read them; the exact key is taken at once, so no
    // normalized text outlives its row's turn.
    let keep_hashes = !eval.is_empty() || cfg.near.enabled;
    let texts: Vec<RowText> = rows
        .par_iter()
        .map_init(
            || (String::new(), String::new(), Vec::new()),
            |(text, normalized, hashes), e| {
                text.clear();
                e.write_content_text(text);
                split_words(text, normalized, hashes);
                RowText {
                    hashes: if keep_hashes { hashes.clone() } else { Vec::new() },
                    chars: text.trim().chars().count(),
                    key: u128::from_le_bytes(exact_key(normalized)),
                }
            },
        )
        .collect();
    let order = priority_order(&rows, &cfg.priority);
    let mut verdicts: Vec<Option<Verdict>> = vec![None; rows.len()];
    let mut out = Outcome::default();

    for (i, e) in rows.iter().enumerate() {
        if let Some(reason) = cfg.quality.reject(e, texts[i].chars) {
            verdicts[i] = Some(Verdict { reason, matched: None, score: None });
        }
    }

    if !eval.is_empty() {
        let eval_words: Vec<Vec<u64>> =
            eval.par_iter().map(|e| words(&e.prompt_text()).hashes).collect();
        let index = EvalIndex::new(cfg.decontaminate.ngram, &eval_words);
        out.eval_skipped = index.skipped();
        let min = cfg.decontaminate.min_matches;
        let found: Vec<(usize, Verdict)> = (0..rows.len())
            .into_par_iter()
            .filter(|&i| verdicts[i].is_none())
            .filter_map(|i| {
                let o = index.overlap(&texts[i].hashes, min)?;
                let matched = Some(eval[o.eval as usize].id.clone());
                Some((i, Verdict { reason: "contaminated", matched, score: Some(o.share) }))
            })
            .collect();
        for (i, v) in found {
            verdicts[i] = Some(v);
        }
    }

    if cfg.exact {
        let mut first: HashMap<u128, usize, BuildHasherDefault<PassThrough>> = HashMap::default();
        first.reserve(rows.len());
        for &i in &order {
            if verdicts[i].is_some() {
                continue;
            }
            match first.get(&texts[i].key) {
                Some(&k) => {
                    verdicts[i] = Some(Verdict {
                        reason: "exact_duplicate",
                        matched: Some(rows[k].id.clone()),
                        score: Some(1.0),
                    })
                }
                None => {
                    first.insert(texts[i].key, i);
                }
            }
        }
    }

    if cfg.near.enabled {
        let near = &cfg.near;
        let (bands, per_band) = match near.bands {
            Some(b) => (b, near.permutations / b.max(1)),
            None => optimal_bands(near.threshold, near.permutations, near.recall_weight),
        };
        out.lsh = (bands, per_band);
        let hasher = MinHasher::new(near.permutations, near.shingle, near.seed.unwrap_or(seed));
        // (signature, shingle set): candidates come from the signatures, the decision from the exact
        // Jaccard similarity of the shingle sets, so no estimation noise sits at the threshold.
        let sigs: Vec<Option<(Vec<u32>, Vec<u32>)>> = (0..rows.len())
            .into_par_iter()
            .map(|i| {
                let w = &texts[i].hashes;
                (verdicts[i].is_none() && !w.is_empty())
                    .then(|| (hasher.signature(w), shingle_set(&hasher, w)))
            })
            .collect();
        let mut index = LshIndex::new(bands, per_band);
        for &i in &order {
            let Some((sig, set)) = &sigs[i] else { continue };
            let best = index
                .candidates(sig)
                .into_iter()
                .map(|k| {
                    (
                        k as usize,
                        sigs[k as usize].as_ref().map_or(0.0, |(_, other)| set_jaccard(set, other)),
                    )
                })
                .filter(|&(_, s)| s >= near.threshold)
                .fold(None, |best: Option<(usize, f64)>, (k, s)| match best {
                    Some((_, bs)) if bs >= s => best,
                    _ => Some((k, s)),
                });
            match best {
                Some((k, s)) => {
                    verdicts[i] = Some(Verdict {
                        reason: "near_duplicate",
                        matched: Some(rows[k].id.clone()),
                        score: Some(s),
                    })
                }
                None => index.insert(sig, i as u32),
            }
        }
    }

    if let Some(embedder) = embedder.filter(|_| cfg.semantic.enabled || cfg.relevance.enabled()) {
        out.relevance = embedding_steps(cfg, &rows, &order, &mut verdicts, embedder)?;
    }

    let removed = verdicts.iter().filter(|v| v.is_some()).count();
    out.kept.reserve(rows.len() - removed);
    out.removed.reserve(removed);
    for (e, v) in rows.into_iter().zip(verdicts) {
        match v {
            None => out.kept.push(e),
            Some(v) => out.removed.push(Removal {
                example: e,
                reason: v.reason.to_string(),
                matched_id: v.matched,
                score: v.score,
            }),
        }
    }
    Ok(out)
}

/// Embeds the rows still alive, removes semantic duplicates, then scores (and filters) relevance;
/// returns the relevance of the rows that survive, in input order, when relevance is on.
fn embedding_steps(
    cfg: &DedupeConfig,
    rows: &[Example],
    order: &[usize],
    verdicts: &mut [Option<Verdict>],
    embedder: &dyn Embedder,
) -> Result<Option<Vec<f64>>, String> {
    let alive: Vec<usize> = order.iter().copied().filter(|&i| verdicts[i].is_none()).collect();
    let texts: Vec<String> = alive.par_iter().map(|&i| rows[i].content_text()).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs)?;
    let mut emb: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
    for (&i, v) in alive.iter().zip(vectors) {
        emb[i] = v;
    }
    if cfg.semantic.enabled {
        for (i, k, c) in semantic_duplicates(&alive, &emb, cfg.semantic.threshold) {
            verdicts[i] = Some(Verdict {
                reason: "semantic_duplicate",
                matched: Some(rows[k].id.clone()),
                score: Some(c),
            });
        }
    }
    if !cfg.relevance.enabled() {
        return Ok(None);
    }
    let topics: Vec<&str> = cfg.relevance.topics.iter().map(String::as_str).collect();
    let topic_emb = embedder.embed(&topics)?;
    let survivors: Vec<usize> = (0..rows.len()).filter(|&i| verdicts[i].is_none()).collect();
    let vs: Vec<&[f32]> = survivors.iter().map(|&i| emb[i].as_slice()).collect();
    let mut kept = Vec::with_capacity(survivors.len());
    for (&i, (score, topic)) in survivors.iter().zip(relevance(&vs, &topic_emb)) {
        if cfg.relevance.min_score.is_some_and(|m| score < m) {
            let matched = Some(cfg.relevance.topics[topic].clone());
            verdicts[i] = Some(Verdict { reason: "low_relevance", matched, score: Some(score) });
        } else {
            kept.push(score);
        }
    }
    Ok(Some(kept))
}
