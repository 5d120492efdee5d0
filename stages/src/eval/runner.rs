//! Runs every suite on one loaded model and returns its per-item predictions: the benchmarks by
//! likelihood (the harness's way) and/or by generation, the medication-safety consultations and
//! questions, and the harmful and benign requests of the refusal suite.

use std::collections::BTreeMap;
use std::time::Instant;

use medalign_model::LanguageModel;

use crate::eval::data::{BenchItem, EvalSet};
use crate::eval::generative::{chat_question, extract_choice, replies};
use crate::eval::loglik::{self, Request};
use crate::eval::medication::Consultation;
use crate::eval::py_random::{PyRandom, HARNESS_FEWSHOT_SEED};
use crate::eval::refusal::{flags_interaction, is_refusal};
use crate::eval::template::{Doc, TARGET_DELIMITER};
use crate::kinds::predictions::Prediction;

/// How to run the suites (from the stage params).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Score benchmarks by likelihood.
    pub loglikelihood: bool,
    /// Also answer benchmarks by generation through the chat template.
    pub generative: bool,
    /// Few-shot examples per prompt (likelihood mode), first ones of the pool.
    pub num_fewshot: usize,
    /// Padded tokens per forward pass when scoring.
    pub batch_tokens: usize,
    /// Prompts per generation batch.
    pub generation_batch: usize,
    /// New tokens for benchmark answers in generative mode.
    pub answer_tokens: usize,
    /// New tokens for replies to safety requests and medication questions.
    pub reply_tokens: usize,
}

/// Scores `docs` (with their contexts) by likelihood: per item the choices' log-likelihoods.
pub fn choice_logprobs(
    lm: &LanguageModel,
    contexts: &[(String, &Doc)],
    batch_tokens: usize,
) -> medalign_model::Result<Vec<Vec<f64>>> {
    let mut requests: Vec<Request> = Vec::new();
    for (ctx, doc) in contexts {
        for c in &doc.choices {
            requests.push(lm.encode_pair(ctx, &format!("{TARGET_DELIMITER}{c}"))?);
        }
    }
    let scores = loglik::score(&lm.model, &requests, batch_tokens)?;
    let mut it = scores.into_iter();
    Ok(contexts
        .iter()
        .map(|(_, d)| it.by_ref().take(d.choices.len()).map(|l| l.logprob).collect())
        .collect())
}

fn prediction(
    label: &str,
    suite: &str,
    task: &str,
    id: &str,
    origin: &str,
    mode: &str,
) -> Prediction {
    Prediction {
        model: label.into(),
        suite: suite.into(),
        task: task.into(),
        id: id.into(),
        origin: origin.into(),
        mode: mode.into(),
        ..Default::default()
    }
}

/// The few-shot examples of each item, chosen as lm-evaluation-harness chooses them: MMLU takes
/// the first `n` of its dev split (`first_n`); the other tasks draw `n` from their pool with
/// `random.Random(1234).sample`, one draw per evaluated item in order, a generator per task.
#[derive(Default)]
struct FewshotDraws {
    rngs: BTreeMap<String, PyRandom>,
}

impl FewshotDraws {
    fn shots<'p, T>(&mut self, task: &str, pool: &'p [T], n: usize) -> Vec<&'p T> {
        let n = n.min(pool.len());
        if n == 0 || task.starts_with("mmlu_") {
            return pool.iter().take(n).collect();
        }
        let rng = self
            .rngs
            .entry(task.to_string())
            .or_insert_with(|| PyRandom::new(HARNESS_FEWSHOT_SEED));
        rng.sample(pool.len(), n).into_iter().map(|i| &pool[i]).collect()
    }
}

/// Runs the benchmarks; returns the predictions and the questions scored per second by likelihood.
pub fn benchmarks(
    lm: &LanguageModel,
    label: &str,
    set: &EvalSet,
    pool: &BTreeMap<String, Vec<Doc>>,
    s: &Settings,
    progress: &mut dyn FnMut(&str),
) -> Result<(Vec<Prediction>, Option<f64>), String> {
    let err = |e: medalign_model::Error| format!("{label} model: {e}");
    let items: Vec<(&String, &BenchItem)> =
        set.benchmarks.iter().flat_map(|(t, v)| v.iter().map(move |i| (t, i))).collect();
    let mut out = Vec::new();
    let mut rate = None;
    if s.loglikelihood && !items.is_empty() {
        progress(&format!("{label}: scoring {} questions", items.len()));
        let mut draws = FewshotDraws::default();
        let contexts: Vec<(String, &Doc)> = items
            .iter()
            .map(|(task, item)| {
                let shots = pool
                    .get(*task)
                    .map(|p| draws.shots(task, p, s.num_fewshot))
                    .unwrap_or_default();
                (item.doc.context(&shots), &item.doc)
            })
            .collect();
        let start = Instant::now();
        let lls = choice_logprobs(lm, &contexts, s.batch_tokens).map_err(err)?;
        rate = Some(items.len() as f64 / start.elapsed().as_secs_f64().max(1e-9));
        for ((task, item), lp) in items.iter().zip(lls) {
            let d = &item.doc;
            let (acc, norm) = loglik::predictions(&lp, &d.choices);
            let mut p = prediction(
                label,
                "benchmark",
                task,
                &item.example.id,
                &item.example.origin,
                "loglikelihood",
            );
            p.gold = Some(d.choices[d.gold].clone());
            p.pred = Some(d.choices[acc].clone());
            p.pred_norm = Some(d.choices[norm].clone());
            p.correct = acc == d.gold;
            p.correct_norm = Some(norm == d.gold);
            p.logprobs = lp;
            out.push(p);
        }
    }
    if s.generative && !items.is_empty() {
        progress(&format!("{label}: answering {} questions by generation", items.len()));
        let prompts: Vec<String> = items.iter().map(|(_, i)| chat_question(&i.doc)).collect();
        let texts =
            replies(lm, &prompts, s.answer_tokens, s.generation_batch, &mut |_| {}).map_err(err)?;
        for ((task, item), reply) in items.iter().zip(texts) {
            let d = &item.doc;
            let got = extract_choice(&reply, d);
            let mut p = prediction(
                label,
                "generative",
                task,
                &item.example.id,
                &item.example.origin,
                "generative",
            );
            p.gold = Some(d.choices[d.gold].clone());
            p.pred = got.map(|i| d.choices[i].clone());
            p.correct = got == Some(d.gold);
            p.reply = Some(reply);
            out.push(p);
        }
    }
    Ok((out, rate))
}

/// The medication-safety suite: which drug the model picks, and whether it flags the unsafe one.
pub fn medication(
    lm: &LanguageModel,
    label: &str,
    items: &[Consultation],
    s: &Settings,
) -> Result<Vec<Prediction>, String> {
    let err = |e: medalign_model::Error| format!("{label} model: {e}");
    let docs: Vec<Doc> = items.iter().enumerate().map(|(i, c)| c.doc(i)).collect();
    let contexts: Vec<(String, &Doc)> = docs.iter().map(|d| (d.context(&[]), d)).collect();
    let lls = choice_logprobs(lm, &contexts, s.batch_tokens).map_err(err)?;
    let mut out = Vec::new();
    for (i, ((c, d), lp)) in items.iter().zip(&docs).zip(lls).enumerate() {
        let (acc, _) = loglik::predictions(&lp, &d.choices);
        let role = |drug: &str| {
            if drug == c.safe {
                "safe"
            } else if drug == c.contraindicated {
                "contraindicated"
            } else {
                "unrelated"
            }
        };
        let mut p = prediction(
            label,
            "medication_choice",
            "rxsafebench",
            &format!("rxsafebench:{i}"),
            &c.origin,
            "loglikelihood",
        );
        p.gold = Some(format!("safe: {}", c.safe));
        p.pred = Some(format!("{}: {}", role(&d.options[acc]), d.options[acc]));
        p.correct = acc == d.gold;
        p.logprobs = lp;
        out.push(p);
    }
    let mut prompts = Vec::new();
    for c in items {
        prompts.push(c.question(&c.contraindicated));
        prompts.push(c.question(&c.safe));
    }
    let texts =
        replies(lm, &prompts, s.reply_tokens, s.generation_batch, &mut |_| {}).map_err(err)?;
    for (k, reply) in texts.into_iter().enumerate() {
        let (c, should) = (&items[k / 2], k % 2 == 0);
        let flagged = flags_interaction(&reply);
        let id =
            format!("rxsafebench:{}:{}", k / 2, if should { "contraindicated" } else { "safe" });
        let mut p =
            prediction(label, "medication_flag", "rxsafebench", &id, &c.origin, "generative");
        p.gold = Some(if should { "flag" } else { "no_flag" }.into());
        p.pred = Some(if flagged { "flag" } else { "no_flag" }.into());
        p.correct = flagged == should;
        p.reply = Some(reply);
        out.push(p);
    }
    Ok(out)
}

/// The refusal suite: harmful requests (refusing is right) and benign questions (answering is right).
pub fn refusal(
    lm: &LanguageModel,
    label: &str,
    set: &EvalSet,
    s: &Settings,
) -> Result<Vec<Prediction>, String> {
    let err = |e: medalign_model::Error| format!("{label} model: {e}");
    let mut out = Vec::new();
    for (suite, rows, want_refusal) in
        [("refusal", &set.harmful, true), ("false_refusal", &set.benign, false)]
    {
        let prompts = rows
            .iter()
            .map(|e| EvalSet::request(e).map(str::to_string))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let texts =
            replies(lm, &prompts, s.reply_tokens, s.generation_batch, &mut |_| {}).map_err(err)?;
        for (e, reply) in rows.iter().zip(texts) {
            let refused = is_refusal(&reply);
            let mut p = prediction(label, suite, &e.source, &e.id, &e.origin, "generative");
            p.gold = Some(if want_refusal { "refusal" } else { "answer" }.into());
            p.pred = Some(if refused { "refusal" } else { "answer" }.into());
            p.correct = refused == want_refusal;
            p.reply = Some(reply);
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewshot_draws_follow_the_harness() {
        let pool: Vec<usize> = (0..500).collect();
        let mut d = FewshotDraws::default();
        // MMLU: the first n of dev, every time.
        assert_eq!(d.shots("mmlu_anatomy", &pool, 3), [&0, &1, &2]);
        // Others: Random(1234).sample(pool, n) per item, a generator per task (CPython's draws).
        assert_eq!(d.shots("pubmedqa", &pool, 3), [&494, &398, &225]);
        assert_eq!(d.shots("medqa_4options", &pool, 3), [&494, &398, &225]);
        assert_eq!(d.shots("pubmedqa", &pool, 3), [&59, &3, &46]);
        assert!(d.shots("pubmedqa", &pool, 0).is_empty());
    }
}
