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
        Self { params: params.clone(), rng: StdRng::seed_from_u64(params.seed.wrapping_add(stream)) }
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
        let t = p.temperature as f32;
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        if let Some(k) = p.top_k {
            order.truncate(k.max(1));
        }
        let max = logits[order[0] as usize] / t;
        let mut probs: Vec<f32> = order.iter().map(|&i| (logits[i as usize] / t - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        if let Some(top_p) = p.top_p {
            // Keep tokens until the cumulative probability reaches top_p (at least one).
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (i, &q) in probs.iter().enumerate() {
                cum += q as f64;
                if cum >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            order.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.random::<f32>() * total;
        for (i, &q) in probs.iter().enumerate() {
            if r < q {
                return order[i];
            }
            r -= q;
        }
        order[probs.len() - 1]
    }
}

/// Index of the largest value (first on ties).
pub(crate) fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
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
        let params = SamplingParams { temperature: 1.0, top_p: Some(1e-6), seed: 3, ..Default::default() };
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
}
