//! Statistics of the report: Wilson score intervals for proportions, McNemar's exact test for a
//! paired difference of two models on the same items, and a paired bootstrap interval of that
//! difference (seeded, so the report is reproducible).

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `successes` out of `n` at `z` (95%: [`Z95`]); `(0, 1)` when `n` is 0.
pub fn wilson(successes: usize, n: usize, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (successes as f64, n as f64);
    let p = k / n;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// McNemar's exact two-sided p-value from the discordant counts: `b` items only the first model
/// got right, `c` only the second. Equal to the binomial test of `min(b, c)` in `b + c` at 1/2.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0; // ln C(n, 0)
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

/// A small deterministic generator (SplitMix64) for resampling.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }
}

/// The 95% percentile interval of `mean(candidate - base)` over `resamples` paired bootstrap
/// resamples of the items, and the share of resamples with a difference of 0 or less
/// (a one-sided bootstrap p-value of "the candidate is better").
pub fn paired_bootstrap(
    base: &[f64],
    candidate: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64, f64)> {
    let n = base.len();
    if n == 0 || n != candidate.len() || resamples == 0 {
        return None;
    }
    let diff: Vec<f64> = candidate.iter().zip(base).map(|(c, b)| c - b).collect();
    let mut rng = SplitMix(seed ^ 0x6D65_6461_6C69_676E);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| diff[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    let not_better = means.iter().filter(|&&m| m <= 0.0).count() as f64 / resamples as f64;
    Some((at(0.025), at(0.975), not_better))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook() {
        // 8 of 10 at 95%: (0.4902, 0.9433).
        let (lo, hi) = wilson(8, 10, Z95);
        assert!((lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0, Z95), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_is_the_binomial_test() {
        // b=1, c=9: 2 * P(X<=1 | 10, .5) = 2 * 11/1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
    }

    #[test]
    fn bootstrap_brackets_the_difference() {
        let base = vec![0.0; 50];
        let cand: Vec<f64> = (0..50).map(|i| (i % 2) as f64).collect();
        let (lo, hi, p) = paired_bootstrap(&base, &cand, 2000, 1).unwrap();
        assert!(lo < 0.5 && hi > 0.5 && lo > 0.2, "{lo} {hi}");
        assert!(p < 0.01);
        assert_eq!(
            paired_bootstrap(&base, &cand, 2000, 1),
            paired_bootstrap(&base, &cand, 2000, 1)
        );
    }
}
