//! Pair selection on hand-made judgments: best against worst, ties, gold needing every judge, the
//! human-verified file overriding the judges, and its errors naming file and line.

use std::collections::HashMap;

use medalign_engine::{CheckContext, StageConfig};
use medalign_stages::kinds::candidates::Candidate;
use medalign_stages::kinds::judgments::Judgment;
use medalign_stages::pair::{select, PairConfig, Thresholds, Verified};

fn cand(prompt: &str, generator: &str) -> Candidate {
    Candidate {
        id: format!("{prompt}#{generator}"),
        prompt_id: prompt.into(),
        task: "instruction".into(),
        generator: generator.into(),
        response: Some(format!("{generator} answer")),
        ..Default::default()
    }
}

fn judged(
    prompt: &str,
    generator: &str,
    judge: &str,
    metric: &str,
    better: &str,
    score: i64,
) -> Judgment {
    Judgment {
        candidate_id: format!("{prompt}#{generator}"),
        prompt_id: prompt.into(),
        judge: judge.into(),
        metric: metric.into(),
        better: better.into(),
        score: Some(score),
        status: "ok".into(),
        ..Default::default()
    }
}

fn thresholds() -> Thresholds {
    Thresholds { margin: 0.75, gold_margin: 1.5, safe_generator: "reference".into() }
}

#[test]
fn orientation_margins_and_tiers() {
    let cands = vec![
        cand("p", "x"),
        cand("p", "y"),
        cand("p", "z"),
        cand("q", "x"),
        cand("q", "y"),
        cand("r", "x"),
    ];
    let mut j = Vec::new();
    for judge in ["a", "b"] {
        // p: x is harmless (harmfulness 1 -> 5 oriented), z harmful; y in between.
        j.push(judged("p", "x", judge, "harmfulness", "low", 1));
        j.push(judged("p", "y", judge, "harmfulness", "low", 3));
        j.push(judged("p", "z", judge, "harmfulness", "low", 5));
        // q: 4 against 4.5 on average: a tie under margin 0.75.
        j.push(judged("q", "x", judge, "empathy", "high", 4));
    }
    j.push(judged("q", "y", "a", "empathy", "high", 4));
    j.push(judged("q", "y", "b", "empathy", "high", 5));
    let s = select(&cands, &j, &HashMap::new(), &thresholds());
    assert_eq!((s.prompts, s.pairs.len(), s.ties_dropped, s.unpaired), (3, 1, 1, 1));
    let p = &s.pairs[0];
    assert_eq!(
        (p.chosen_generator.as_str(), p.rejected_generator.as_str(), p.margin, p.tier.as_str()),
        ("x", "z", 4.0, "gold")
    );
    assert!(p.judges_agree && p.judges == ["a", "b"]);

    // A failed metric removes that judge's score of the candidate: only one judge left, so silver.
    j.push(Judgment {
        status: "failed".into(),
        score: None,
        ..judged("p", "z", "b", "empathy", "high", 0)
    });
    let s = select(&cands, &j, &HashMap::new(), &thresholds());
    assert_eq!(
        (s.pairs[0].tier.as_str(), s.pairs[0].judges.clone()),
        ("silver", vec!["a".to_string()])
    );

    // People overrule judges.
    let verified =
        HashMap::from([("q".to_string(), Verified { chosen: "x".into(), rejected: "y".into() })]);
    let s = select(&cands, &j, &verified, &thresholds());
    let q = s.pairs.iter().find(|p| p.prompt_id == "q").unwrap();
    assert!(q.verified && q.tier == "gold" && q.chosen_generator == "x");
    assert_eq!(s.ties_dropped, 0);
}

#[test]
fn verified_file_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("v.jsonl"),
        "{\"prompt_id\": \"q\", \"chosen\": \"x\", \"rejected\": \"y\"}\n{\"prompt_id\": \"r\", \"chosen\": 3}\n",
    )
    .unwrap();
    let cfg: PairConfig = serde_yaml::from_str("verified: v.jsonl").unwrap();
    let cx = CheckContext::new(dir.path().to_path_buf());
    let errors = cfg.check(&cx);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "verified");
    assert!(
        errors[0].message.ends_with("v.jsonl:2: field \"chosen\": expected a string"),
        "{}",
        errors[0].message
    );
    assert_eq!(cfg.input_files(&cx)[0].path, dir.path().join("v.jsonl"));
}

fn answer(prompt: &str, task: &str, generator: &str, text: &str) -> Candidate {
    Candidate { task: task.into(), response: Some(text.into()), ..cand(prompt, generator) }
}

#[test]
fn by_rules_the_reference_meets_the_answer_the_rules_call_wrong() {
    let refusal = "I'm sorry, but I cannot help with falsifying records.";
    let cands = vec![
        // Harmful, the model complies: a rule pair.
        answer("h1", "safety", "reference", refusal),
        answer("h1", "safety", "model", "Sure. First, change the dates in the chart."),
        // Harmful, the model already declines: nothing to learn.
        answer("h2", "safety", "reference", refusal),
        answer("h2", "safety", "model", "I cannot do that."),
        // Benign, the model refuses: a rule pair.
        answer("b1", "instruction", "reference", "Ibuprofen is taken every 6 to 8 hours."),
        answer("b1", "instruction", "model", "I'm sorry, but I can't provide medical advice."),
        // Benign, both answer: the reference against the model's worst-judged answer.
        answer("b2", "instruction", "reference", "Metformin lowers blood sugar."),
        answer("b2", "instruction", "low", "Metformin is an antibiotic."),
        answer("b2", "instruction", "high", "Metformin treats type 2 diabetes."),
        // Benign, but the reference itself declines: the model's own answer is chosen, and the
        // model already answers, so nothing to learn.
        answer("b3", "instruction", "reference", "I cannot answer that."),
        answer("b3", "instruction", "model", "It depends."),
        // Benign without a reference: the model's sampled answer against its own refusal.
        answer("b4", "instruction", "model", "I'm sorry, but I cannot assist with that request."),
        answer("b4", "instruction", "sampled", "Take it with food, at the same time each day."),
        // Harmful without a reference, and the model never declines: no chosen side.
        answer("h3", "safety", "model", "Sure, here is how."),
    ];
    let j = vec![
        judged("h1", "reference", "a", "harmfulness", "low", 1),
        judged("h1", "model", "a", "harmfulness", "low", 5),
        judged("b1", "reference", "a", "helpfulness", "high", 2),
        judged("b1", "model", "a", "helpfulness", "high", 4),
        judged("b2", "low", "a", "helpfulness", "high", 2),
        judged("b2", "high", "a", "helpfulness", "high", 4),
    ];
    let s = medalign_stages::pair::select_by_rules(&cands, &j, "reference", true);
    assert_eq!((s.prompts, s.pairs.len(), s.already_right, s.unpaired), (7, 4, 2, 1));
    let got: Vec<(&str, &str, &str, &str)> = s
        .pairs
        .iter()
        .map(|p| {
            (p.prompt_id.as_str(), p.rejected_generator.as_str(), p.tier.as_str(), p.kind.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("h1", "model", "rule", "safety"),
            ("b1", "model", "rule", "preference"),
            ("b2", "low", "reference", "preference"),
            ("b4", "model", "rule", "preference")
        ]
    );
    let chosen: Vec<&str> = s.pairs.iter().map(|p| p.chosen_generator.as_str()).collect();
    assert_eq!(chosen, ["reference", "reference", "reference", "sampled"]);
    // The judge scored both sides of h1 (agrees) and b1 (disagrees); b2's reference is unscored.
    assert_eq!((s.judge_compared, s.judge_agrees), (2, 1));
    // Without reference pairs, the benign prompt the model already answers is already right.
    let s = medalign_stages::pair::select_by_rules(&cands, &j, "reference", false);
    assert_eq!((s.prompts, s.pairs.len(), s.already_right, s.unpaired), (7, 3, 3, 1));
    assert!(s.pairs.iter().all(|p| p.tier == "rule"));
}
