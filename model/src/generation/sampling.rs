//! Picking the next token from logits, in the order `transformers` applies its processors:
//! repetition penalty, temperature, top-k, top-p.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax).
    pub temperature: f64,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches p.
    pub top_p: Option<f64>,
    /// CTRL's penalty on tokens already present (1 = none).
    pub repetition_penalty: f64,
    /// Seed of the random stream (sequence i uses seed + i).
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, repetition_penalty: 1.0, seed: 0 }
    }
}

/// A sampler with its own random stream.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded with `params.seed + stream`.
    pub fn new(params: &SamplingParams, stream: u64) -> Self {
        Self {
            params: params.clone(),
            rng: StdRng::seed_from_u64(params.seed.wrapping_add(stream)),
        }
    }

    /// The next token given the logits and the ids seen so far (prompt and generated).
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let pen = p.repetition_penalty as f32;
            let mut seen = history.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for &t in &seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / pen } else { *l * pen };
                }
            }
        }
        if p.temperature <= 0.0 || p.top_k == Some(1) {
            return argmax(logits);
        }
        // The probabilities at this temperature, in place (a vectorized softmax: a scalar `exp`
        // per token and a sort of the whole vocabulary took 2.8 ms a token for SmolLM2's 49152).
        crate::layers::softmax::softmax_row(logits, None, 1.0 / p.temperature as f32);
        let probs: &[f32] = logits;
        let u = self.rng.random::<f32>();
        if p.top_k.is_none_or(|k| k >= probs.len()) && p.top_p.is_none_or(|q| q >= 1.0) {
            // Nothing is cut: draw over the vocabulary in index order.
            return draw(u, probs, probs.len(), |j| j as u32);
        }
        let kept = nucleus(probs, p.top_k, p.top_p);
        draw(u, probs, kept.len(), |j| kept[j])
    }
}

/// The token that `u` in `[0, 1)` picks from the `n` candidates `token(0..n)`, each taking its
/// share of their total probability in `probs` (the last with a non-zero share when rounding runs
/// past the end). The shares are summed in blocks of sixteen, so that the running sum is one add
/// per block.
fn draw(u: f32, probs: &[f32], n: usize, token: impl Fn(usize) -> u32) -> u32 {
    const B: usize = 16;
    let share = |j: usize| probs[token(j) as usize];
    let sums: Vec<f32> =
        (0..n).step_by(B).map(|b| (b..n.min(b + B)).map(share).sum::<f32>()).collect();
    let r = u * sums.iter().sum::<f32>();
    let mut cum = 0f32;
    let mut last = None;
    for (b, &s) in sums.iter().enumerate() {
        let block = b * B..n.min((b + 1) * B);
        if s > 0.0 {
            last = block.clone().rev().find(|&j| share(j) > 0.0).map(&token);
        }
        if r < cum + s {
            // Inside this block; rounding may leave `r` past its last value, then its last
            // non-zero one is taken.
            let mut inner = cum;
            for j in block.clone() {
                inner += share(j);
                if r < inner {
                    return token(j);
                }
            }
            return last.unwrap_or(token(block.start));
        }
        cum += s;
    }
    last.unwrap_or(0)
}

/// The tokens kept by top-k then top-p, most likely first: the `top_k` most likely (all when
/// `None`), cut to the shortest run whose probability reaches `top_p` (at least one token).
/// Sorting the whole vocabulary is what this avoids: the most likely tokens are selected in
/// rounds of growing size (64, then 4x) until the run reaches `top_p` or `top_k`, each round
/// selecting among the tokens the rounds before left and sorting only what it selected.
fn nucleus(probs: &[f32], top_k: Option<usize>, top_p: Option<f64>) -> Vec<u32> {
    let limit = top_k.unwrap_or(probs.len()).clamp(1, probs.len());
    let desc = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]);
    let mut order: Vec<u32> = (0..probs.len() as u32).collect();
    let (mut sorted, mut cum) = (0, 0f64);
    while sorted < limit {
        let upto = if top_p.is_some() { (sorted.max(16) * 4).min(limit) } else { limit };
        let rest = &mut order[sorted..];
        if upto - sorted < rest.len() {
            rest.select_nth_unstable_by(upto - sorted - 1, desc);
        }
        order[sorted..upto].sort_unstable_by(desc);
        if let Some(p) = top_p {
            for (i, &t) in order[sorted..upto].iter().enumerate() {
                cum += probs[t as usize] as f64;
                if cum >= p {
                    order.truncate(sorted + i + 1);
                    return order;
                }
            }
        }
        sorted = upto;
    }
    order.truncate(limit);
    order
}

/// Index of the largest value (first on ties; NaNs are never the largest): the first block of
/// sixteen holding the maximum, then its place in the block. A scan that compared each value with
/// the best so far took 60 us over SmolLM2's vocabulary.
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let (mut best, mut at) = (f32::NEG_INFINITY, 0);
    for (b, c) in v.chunks(16).enumerate() {
        let m = c.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if m > best {
            (best, at) = (m, b * 16);
        }
    }
    (at + v[at..].iter().position(|&x| x == best).unwrap_or(0)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(&SamplingParams::default(), 0);
        assert_eq!(s.sample(&mut [0.1, 2.0, -1.0], &[]), 1);
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let params = SamplingParams { repetition_penalty: 4.0, ..Default::default() };
        let mut s = Sampler::new(&params, 0);
        assert_eq!(s.sample(&mut [0.0, 2.0, 1.0], &[1]), 2);
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let params =
            SamplingParams { temperature: 1.0, top_p: Some(1e-6), seed: 3, ..Default::default() };
        let mut s = Sampler::new(&params, 0);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.5, 1.0, 0.9], &[]), 1);
        }
    }

    #[test]
    fn same_seed_same_samples() {
        let params = SamplingParams { temperature: 1.0, seed: 11, ..Default::default() };
        let draw = |stream| {
            let mut s = Sampler::new(&params, stream);
            (0..30).map(|_| s.sample(&mut [0.0; 50], &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(0), draw(0));
        assert_ne!(draw(0), draw(1));
    }

    /// Random values with ties (a coarse grid), `n` long.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| (rng.random::<f32>() * 50.0).floor()).collect()
    }

    #[test]
    fn argmax_is_the_first_largest_value_in_any_block_and_the_tail() {
        for (n, seed) in [(1, 0), (15, 1), (16, 2), (17, 3), (100, 4), (49152, 5), (49157, 6)] {
            let v = values(n, seed);
            let first = v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
            assert_eq!(argmax(&v), first as u32, "n = {n}");
        }
        let mut tail = vec![0.0; 35];
        tail[34] = 1.0;
        assert_eq!(argmax(&tail), 34);
        assert_eq!(argmax(&[f32::NAN, 2.0, 2.0]), 1);
    }

    /// Top-k then top-p by sorting everything.
    fn nucleus_by_sorting(probs: &[f32], k: Option<usize>, p: Option<f64>) -> Vec<u32> {
        let mut order: Vec<u32> = (0..probs.len() as u32).collect();
        order.sort_by(|&a, &b| probs[b as usize].total_cmp(&probs[a as usize]));
        order.truncate(k.unwrap_or(order.len()).max(1));
        if let Some(p) = p {
            let mut cum = 0f64;
            let keep = order.iter().position(|&t| {
                cum += probs[t as usize] as f64;
                cum >= p
            });
            order.truncate(keep.map_or(order.len(), |i| i + 1));
        }
        order
    }

    #[test]
    fn nucleus_keeps_what_sorting_the_whole_vocabulary_keeps() {
        use rand::seq::SliceRandom;
        let mut rng = StdRng::seed_from_u64(9);
        let mut rank: Vec<usize> = (0..5000).collect();
        rank.shuffle(&mut rng);
        // Distinct probabilities in shuffled order: peaked (a few tokens reach p) and flat
        // (thousands do, which takes several rounds of selection).
        for sharpness in [8.0f32, 0.05] {
            let mut probs: Vec<f32> =
                rank.iter().map(|&r| (r as f32 / 5000.0 * sharpness * 10.0).exp()).collect();
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= total);
            for (k, p) in [
                (Some(40), None),
                (None, Some(0.9)),
                (None, Some(0.3)),
                (Some(3000), Some(0.95)),
                (Some(1), Some(0.5)),
                (None, Some(0.999999)),
            ] {
                assert_eq!(
                    nucleus(&probs, k, p),
                    nucleus_by_sorting(&probs, k, p),
                    "k {k:?} p {p:?} sharpness {sharpness}"
                );
            }
        }
    }

    #[test]
    fn draw_gives_each_candidate_its_share_and_never_one_without() {
        let probs = [0.0, 0.5, 0.0, 0.5, 0.0];
        let picks: Vec<u32> = [0.0, 0.49, 0.51, 0.999_999_9]
            .iter()
            .map(|&u| draw(u, &probs, probs.len(), |j| j as u32))
            .collect();
        assert_eq!(picks, [1, 1, 3, 3]);
        // Forty equal shares across three blocks of sixteen, as the whole vocabulary and as kept
        // tokens (ids 100-139 of 140, listed last first).
        let even = [0.025f32; 40];
        let mut wide = vec![0.5f32; 100];
        wide.extend([0.025; 40]);
        let kept: Vec<u32> = (100..140).rev().collect();
        for i in 0..40 {
            let u = (i as f32 + 0.5) / 40.0;
            assert_eq!(draw(u, &even, even.len(), |j| j as u32), i);
            assert_eq!(draw(u, &wide, kept.len(), |j| kept[j]), 139 - i);
        }
    }

    #[test]
    fn samples_follow_the_softmax_at_the_temperature() {
        let params = SamplingParams { temperature: 0.5, seed: 1, ..Default::default() };
        let mut s = Sampler::new(&params, 0);
        let logits = [1.0f32, 0.0, 0.5, -1.0];
        let n = 20000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        let e: Vec<f64> = logits.iter().map(|&l| (l as f64 / 0.5).exp()).collect();
        let z: f64 = e.iter().sum();
        for (c, e) in counts.iter().zip(&e) {
            let want = e / z;
            let sigma = (want * (1.0 - want) / n as f64).sqrt();
            assert!((*c as f64 / n as f64 - want).abs() < 4.0 * sigma, "{counts:?}");
        }
    }
}
