//! Choosing each prompt's pair from judge scores: a response's score is the mean of its oriented
//! metric scores per judge, then the mean over judges. Best against worst, when the margin is wide
//! enough (else the prompt is a tie, dropped and counted); gold when every judge agrees and the
//! margin is large, or when a person verified the pair; silver otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::kinds::candidates::Candidate;
use crate::kinds::judgments::Judgment;
use crate::kinds::pairs::Pair;

/// The thresholds of [`select`].
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    /// Smallest score difference that makes a pair.
    pub margin: f64,
    /// Smallest difference for gold (with every judge agreeing).
    pub gold_margin: f64,
    /// The generator whose answer is the chosen one of a safety pair when it has a score.
    pub safe_generator: String,
}

/// A person's verdict on one prompt: the generators of the chosen and rejected responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Generator of the chosen response.
    pub chosen: String,
    /// Generator of the rejected response.
    pub rejected: String,
}

/// What [`select`] (or [`crate::pair::rules::select_by_rules`]) produced, with counts that
/// reconcile: `prompts = pairs + ties_dropped + unpaired + already_right`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// The pairs, in prompt order.
    pub pairs: Vec<Pair>,
    /// Prompts seen in the candidates.
    pub prompts: usize,
    /// Prompts whose best and worst responses were closer than the margin.
    pub ties_dropped: usize,
    /// Prompts with fewer than two scored responses (by rules: no usable reference or answer).
    pub unpaired: usize,
    /// By rules: harmful prompts every model answer already declines.
    pub already_right: usize,
    /// By rules: pairs whose two responses the judges both scored.
    pub judge_compared: usize,
    /// By rules: of those, the pairs the judges' consensus orders as the rules and reference do.
    pub judge_agrees: usize,
}

/// Per candidate, per judge: the mean oriented score, when every one of its metrics succeeded.
pub(crate) fn judge_scores(judgments: &[Judgment]) -> HashMap<&str, BTreeMap<&str, f64>> {
    let mut sums: HashMap<(&str, &str), Option<(f64, usize)>> = HashMap::new();
    for j in judgments {
        let slot = sums.entry((&j.candidate_id, &j.judge)).or_insert(Some((0.0, 0)));
        *slot = match (*slot, j.oriented()) {
            (Some((s, n)), Some(v)) if j.status == "ok" => Some((s + v, n + 1)),
            _ => None,
        };
    }
    let mut out: HashMap<&str, BTreeMap<&str, f64>> = HashMap::new();
    for ((c, judge), v) in sums {
        if let Some((s, n)) = v {
            out.entry(c).or_default().insert(judge, s / n as f64);
        }
    }
    out
}

/// Per candidate: the mean of its judges' scores.
pub(crate) fn consensus_scores<'a>(
    by_judge: &HashMap<&'a str, BTreeMap<&str, f64>>,
) -> HashMap<&'a str, f64> {
    by_judge.iter().map(|(c, m)| (*c, m.values().sum::<f64>() / m.len() as f64)).collect()
}

/// Candidates with a response, grouped by prompt in first-seen order.
pub(crate) fn group_by_prompt(candidates: &[Candidate]) -> Vec<(&str, Vec<&Candidate>)> {
    let mut by_prompt: Vec<(&str, Vec<&Candidate>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for c in candidates.iter().filter(|c| c.response.is_some()) {
        let i = *index.entry(&c.prompt_id).or_insert_with(|| {
            by_prompt.push((&c.prompt_id, Vec::new()));
            by_prompt.len() - 1
        });
        by_prompt[i].1.push(c);
    }
    by_prompt
}

/// Chooses one pair per prompt.
pub fn select(
    candidates: &[Candidate],
    judgments: &[Judgment],
    verified: &HashMap<String, Verified>,
    t: &Thresholds,
) -> Selection {
    let scores = judge_scores(judgments);
    let means = consensus_scores(&scores);
    let all_judges: BTreeSet<&str> = judgments.iter().map(|j| j.judge.as_str()).collect();
    let by_prompt = group_by_prompt(candidates);
    let mut out = Selection { prompts: by_prompt.len(), ..Default::default() };
    for (prompt, group) in by_prompt {
        let consensus = |c: &Candidate| means.get(c.id.as_str()).copied();
        if let Some(v) = verified.get(prompt) {
            let find = |g: &str| group.iter().copied().find(|c| c.generator == g);
            if let (Some(ch), Some(rj)) = (find(&v.chosen), find(&v.rejected)) {
                let mut p = make_pair(
                    ch,
                    rj,
                    &scores,
                    consensus(ch).unwrap_or(0.0),
                    consensus(rj).unwrap_or(0.0),
                );
                p.tier = "gold".into();
                p.verified = true;
                out.pairs.push(p);
                continue;
            }
        }
        let mut scored: Vec<(&Candidate, f64)> =
            group.iter().filter_map(|c| consensus(c).map(|s| (*c, s))).collect();
        if scored.len() < 2 {
            out.unpaired += 1;
            continue;
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        let safety = group[0].task == "safety";
        let best = match scored.iter().position(|(c, _)| safety && c.generator == t.safe_generator)
        {
            Some(i) => scored.remove(i),
            None => scored.remove(0),
        };
        let worst = *scored.last().expect("two scored responses");
        if best.1 - worst.1 < t.margin || best.1 <= worst.1 {
            out.ties_dropped += 1;
            continue;
        }
        let mut p = make_pair(best.0, worst.0, &scores, best.1, worst.1);
        p.kind = if safety { "safety" } else { "preference" }.into();
        let every_judge = p.judges.len() == all_judges.len();
        p.tier = if p.judges_agree && every_judge && p.margin >= t.gold_margin {
            "gold"
        } else {
            "silver"
        }
        .into();
        out.pairs.push(p);
    }
    out
}

pub(crate) fn make_pair(
    ch: &Candidate,
    rj: &Candidate,
    scores: &HashMap<&str, BTreeMap<&str, f64>>,
    cs: f64,
    rs: f64,
) -> Pair {
    let empty = BTreeMap::new();
    let (a, b) = (
        scores.get(ch.id.as_str()).unwrap_or(&empty),
        scores.get(rj.id.as_str()).unwrap_or(&empty),
    );
    let judges: Vec<&str> = a.keys().filter(|j| b.contains_key(*j)).copied().collect();
    let judges_agree = !judges.is_empty() && judges.iter().all(|j| a[j] > b[j]);
    Pair {
        prompt_id: ch.prompt_id.clone(),
        source: ch.source.clone(),
        task: ch.task.clone(),
        messages: ch.messages.clone(),
        chosen: ch.response.clone().unwrap_or_default(),
        rejected: rj.response.clone().unwrap_or_default(),
        chosen_generator: ch.generator.clone(),
        rejected_generator: rj.generator.clone(),
        chosen_id: ch.id.clone(),
        rejected_id: rj.id.clone(),
        chosen_score: (cs * 1e4).round() / 1e4,
        rejected_score: (rs * 1e4).round() / 1e4,
        margin: ((cs - rs) * 1e4).round() / 1e4,
        judges: judges.iter().map(|s| s.to_string()).collect(),
        judges_agree,
        kind: if ch.task == "safety" { "safety" } else { "preference" }.into(),
        ..Default::default()
    }
}
