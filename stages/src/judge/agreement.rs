//! How much several judges agree, per metric and pair of judges, over the responses both scored:
//! exact agreement, agreement within one point, and Cohen's kappa on the five score categories.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kinds::judgments::Judgment;

/// Agreement of two judges on one metric.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agreement {
    /// The metric.
    pub metric: String,
    /// First judge.
    pub judge_a: String,
    /// Second judge.
    pub judge_b: String,
    /// Responses both judges scored.
    pub n: usize,
    /// Share with equal scores.
    pub exact: f64,
    /// Share with scores at most one apart.
    pub within_1: f64,
    /// Cohen's kappa (1 = perfect, 0 = chance); none when chance agreement is 1.
    pub kappa: Option<f64>,
}

/// Cohen's kappa of paired labels in `1..=5`: `(p_o - p_e) / (1 - p_e)`.
pub fn cohen_kappa(pairs: &[(i64, i64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.is_empty() {
        return None;
    }
    let (mut a, mut b) = ([0f64; 5], [0f64; 5]);
    let mut observed = 0.0;
    for &(x, y) in pairs {
        a[(x - 1).clamp(0, 4) as usize] += 1.0;
        b[(y - 1).clamp(0, 4) as usize] += 1.0;
        observed += f64::from(u8::from(x == y));
    }
    let p_o = observed / n;
    let p_e: f64 = (0..5).map(|k| a[k] / n * b[k] / n).sum();
    (p_e < 1.0).then(|| (p_o - p_e) / (1.0 - p_e))
}

/// Agreement for every metric and every pair of judges (in name order).
pub fn agreements(rows: &[Judgment]) -> Vec<Agreement> {
    // metric -> judge -> candidate -> score
    let mut by: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, i64>>> = BTreeMap::new();
    for r in rows {
        if let Some(s) = r.score {
            by.entry(&r.metric)
                .or_default()
                .entry(&r.judge)
                .or_default()
                .insert(&r.candidate_id, s);
        }
    }
    let mut out = Vec::new();
    for (metric, judges) in &by {
        let names: Vec<&&str> = judges.keys().collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                let (sa, sb) = (&judges[**a], &judges[**b]);
                let pairs: Vec<(i64, i64)> =
                    sa.iter().filter_map(|(c, x)| sb.get(c).map(|y| (*x, *y))).collect();
                let n = pairs.len();
                let share = |f: &dyn Fn(i64, i64) -> bool| {
                    if n == 0 {
                        0.0
                    } else {
                        pairs.iter().filter(|(x, y)| f(*x, *y)).count() as f64 / n as f64
                    }
                };
                out.push(Agreement {
                    metric: metric.to_string(),
                    judge_a: a.to_string(),
                    judge_b: b.to_string(),
                    n,
                    exact: share(&|x, y| x == y),
                    within_1: share(&|x, y| (x - y).abs() <= 1),
                    kappa: cohen_kappa(&pairs),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_matches_a_hand_computed_table() {
        // n = 10, p_o = 0.7; A says 1 for 5 items, B for 6: p_e = .5 * .6 + .5 * .4 = .5; kappa = .2 / .5.
        let mut pairs = vec![(1, 1); 4];
        pairs.extend([(2, 2); 3]);
        pairs.extend([(1, 2); 1]);
        pairs.extend([(2, 1); 2]);
        assert!((cohen_kappa(&pairs).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(cohen_kappa(&[(3, 3), (4, 4)]), Some(1.0));
        assert_eq!(cohen_kappa(&[(3, 3), (3, 3)]), None);
    }

    #[test]
    fn agreements_pair_judges_on_shared_items() {
        let j = |judge: &str, c: &str, s| Judgment {
            judge: judge.into(),
            candidate_id: c.into(),
            metric: "m".into(),
            score: Some(s),
            ..Default::default()
        };
        let rows =
            vec![j("a", "1", 5), j("b", "1", 4), j("a", "2", 1), j("b", "2", 3), j("a", "3", 2)];
        let ag = agreements(&rows);
        assert_eq!(ag.len(), 1);
        assert_eq!((ag[0].n, ag[0].exact, ag[0].within_1), (2, 0.0, 0.5));
    }
}
