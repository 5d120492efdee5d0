//! Choosing pairs by rule and reference, for judges too weak to pick them: the chosen response is
//! the dataset's reference when the refusal rules accept it, else the model's own answer they
//! accept (a prompt without a reference); the rejected response is the model's answer the rules
//! call wrong (an answer to a harmful request, a refusal of a benign one), else, on a benign
//! prompt, the model's answer the judges like least. The judges still score every candidate; how
//! often they order a pair as the rules and reference do is their agreement with them.

use std::collections::HashMap;

use crate::eval::refusal::is_refusal;
use crate::kinds::candidates::Candidate;
use crate::kinds::judgments::Judgment;
use crate::kinds::pairs::Pair;
use crate::pair::select::{consensus_scores, group_by_prompt, judge_scores, make_pair, Selection};

/// Chooses one pair per prompt: the `reference_generator`'s answer (or, without a usable one, the
/// model's own answer the rules accept, the judges' favourite) against the model's worse one.
/// Without `reference_pairs`, a benign prompt the model already answers makes no pair (it counts
/// as already right), so every pair is one the rules decide.
pub fn select_by_rules(
    candidates: &[Candidate],
    judgments: &[Judgment],
    reference_generator: &str,
    reference_pairs: bool,
) -> Selection {
    let by_judge = judge_scores(judgments);
    let scores = consensus_scores(&by_judge);
    let groups = group_by_prompt(candidates);
    let mut out = Selection { prompts: groups.len(), ..Default::default() };
    for (_, group) in groups {
        let harmful = group[0].task == "safety";
        let right = |c: &&Candidate| is_refusal(text(c)) == harmful;
        let model: Vec<&Candidate> =
            group.iter().copied().filter(|c| c.generator != reference_generator).collect();
        // A reference the rules call wrong (a benign answer that declines) teaches the wrong thing;
        // without a usable one, the model's own right answer is chosen (on-policy).
        let reference =
            group.iter().copied().find(|c| c.generator == reference_generator).filter(right);
        let Some(chosen) = reference.or_else(|| best(model.iter().copied().filter(right), &scores))
        else {
            out.unpaired += 1;
            continue;
        };
        let wrong = model.iter().copied().find(|c| !right(c));
        let rejected = match (wrong, harmful) {
            (Some(c), _) => c,
            // Every answer already does what the rules ask: nothing they can teach here.
            (None, harmful) if harmful || !reference_pairs || reference.is_none() => {
                out.already_right += 1;
                continue;
            }
            (None, _) => match worst(&model, &scores) {
                Some(c) => c,
                None => {
                    out.unpaired += 1;
                    continue;
                }
            },
        };
        let (cs, rs) =
            (scores.get(chosen.id.as_str()).copied(), scores.get(rejected.id.as_str()).copied());
        if let (Some(c), Some(r)) = (cs, rs) {
            out.judge_compared += 1;
            out.judge_agrees += usize::from(c > r);
        }
        let mut p: Pair =
            make_pair(chosen, rejected, &by_judge, cs.unwrap_or(0.0), rs.unwrap_or(0.0));
        p.kind = if harmful { "safety" } else { "preference" }.into();
        p.tier = if wrong.is_some() { "rule" } else { "reference" }.into();
        out.pairs.push(p);
    }
    out
}

fn text(c: &Candidate) -> &str {
    c.response.as_deref().unwrap_or_default()
}

/// The answer the judges score highest (the first one when none is scored).
fn best<'a>(
    answers: impl Iterator<Item = &'a Candidate>,
    scores: &HashMap<&str, f64>,
) -> Option<&'a Candidate> {
    let answers: Vec<&Candidate> = answers.collect();
    let scored = answers.iter().copied().filter_map(|c| scores.get(c.id.as_str()).map(|s| (c, *s)));
    scored
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.id.cmp(&a.0.id)))
        .map(|(c, _)| c)
        .or(answers.first().copied())
}

/// The model answer the judges score lowest (the first one when none is scored).
fn worst<'a>(model: &[&'a Candidate], scores: &HashMap<&str, f64>) -> Option<&'a Candidate> {
    let scored = model.iter().copied().filter_map(|c| scores.get(c.id.as_str()).map(|s| (c, *s)));
    scored
        .min_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.id.cmp(&b.0.id)))
        .map(|(c, _)| c)
        .or(model.first().copied())
}
