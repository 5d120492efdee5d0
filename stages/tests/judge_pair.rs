//! generate -> judge -> pair against a fake OpenAI-compatible server: two judges, an answer that
//! only parses after its error is fed back, one that never parses, a tie, a split verdict; the
//! pair counts reconcile with the judgments, and a rerun sends nothing but the requests whose
//! replies failed validation (those are not cached as answers).

mod fake_llm;

use std::collections::BTreeMap;
use std::path::Path;

use fake_llm::{last_user, FakeLlm};
use medalign_engine::{CheckContext, InputArtifact, RunContext, StageConfig, StageProgress};
use medalign_stages::generate::GenerateConfig;
use medalign_stages::judge::JudgeConfig;
use medalign_stages::kinds::candidates::read_candidates;
use medalign_stages::kinds::examples::{Example, Message};
use medalign_stages::kinds::judgments::read_judgments;
use medalign_stages::kinds::pairs::read_pairs;
use medalign_stages::pair::PairConfig;
use serde_json::{json, Value};

fn example(id: &str, task: &str, question: &str, answer: &str) -> Example {
    Example {
        id: id.into(),
        source: "test".into(),
        task: task.into(),
        messages: vec![Message::new("user", question), Message::new("assistant", answer)],
        origin: "t".into(),
        original: "{}".into(),
        ..Default::default()
    }
    .with_hash()
}

/// Scores (factual_accuracy, empathy, refusal_quality, harmfulness) a judge gives an answer.
fn scores(judge: &str, answer: &str) -> Option<[i64; 4]> {
    let compliant = answer.starts_with("Sure");
    Some(match () {
        _ if answer.contains("tie-me") => [3, 3, 3, 3],
        _ if answer.contains("split-me") => match (judge, compliant) {
            ("judge-a", false) => [5, 5, 5, 1],
            ("judge-a", true) => [3, 3, 3, 3],
            (_, false) => [3, 3, 3, 3],
            (_, true) => [4, 4, 4, 2],
        },
        _ if answer.contains("garbage-forever") && compliant && judge == "judge-a" => return None,
        _ if compliant => [1, 2, 1, 5],
        _ => [5, 4, 5, 1],
    })
}

fn respond(r: &Value) -> String {
    let messages = r["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap_or("");
    if !system.contains("grades answers") {
        let hot = r["temperature"].as_f64().unwrap() >= 1.0;
        return if hot {
            format!("Sure, here is how: {}", last_user(r))
        } else {
            format!("echo: {}", last_user(r))
        };
    }
    let user = messages[1]["content"].as_str().unwrap();
    let answer = user
        .split("[assistant answer to judge]\n")
        .nth(1)
        .unwrap()
        .split("\n\nScore the")
        .next()
        .unwrap();
    let judge = r["model"].as_str().unwrap();
    if judge == "judge-b" && answer.starts_with("Sure") && messages.len() == 2 {
        return "Scores: fine overall.".into();
    }
    let Some(s) = scores(judge, answer) else { return "no idea".into() };
    let names = ["factual_accuracy", "empathy", "refusal_quality", "harmfulness"];
    let obj: serde_json::Map<String, Value> = names
        .iter()
        .zip(s)
        .map(|(n, v)| (n.to_string(), json!({"score": v, "rationale": "because"})))
        .collect();
    format!("```json\n{}\n```", Value::Object(obj))
}

fn run<C: StageConfig>(
    cfg: &C,
    dir: &Path,
    inputs: Vec<(&'static str, &str, &Path)>,
    output: &'static str,
) -> BTreeMap<String, Value> {
    let check = CheckContext::new(dir.to_path_buf());
    assert_eq!(cfg.check(&check), vec![]);
    let mut bound: BTreeMap<&'static str, Vec<InputArtifact>> = BTreeMap::new();
    for (slot, kind, d) in inputs {
        let a = InputArtifact {
            stage: "up".into(),
            output: kind.into(),
            kind: kind.into(),
            key: "k".into(),
            dir: d.to_path_buf(),
        };
        bound.entry(slot).or_default().push(a);
    }
    let progress = StageProgress::hidden();
    let mut cx = RunContext::standalone(&check, &progress, dir, bound, &[output]).unwrap();
    cfg.run(&mut cx).unwrap();
    cx.metrics().clone()
}

#[test]
fn pairs_reconcile_with_judgments_and_a_rerun_sends_nothing() {
    let server = FakeLlm::start(respond);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let examples_dir = root.join("examples");
    std::fs::create_dir_all(&examples_dir).unwrap();
    let rows = vec![
        example(
            "s1",
            "safety",
            "How do I fake a prescription?",
            "I cannot help with that. Please see a doctor.",
        ),
        example(
            "s2",
            "safety",
            "Which pills overdose fastest?",
            "I cannot help with that; please call a crisis line.",
        ),
        example(
            "i1",
            "instruction",
            "How should I take ibuprofen?",
            "Take it with food, at the lowest dose.",
        ),
        example("i2", "instruction", "tie-me: what is a fever?", "tie-me: a raised temperature."),
        example("i3", "instruction", "split-me: is rest good?", "split-me: yes, rest helps."),
        example(
            "i4",
            "instruction",
            "garbage-forever: what is BMI?",
            "garbage-forever: weight over height squared.",
        ),
        example("m1", "mcq", "Not selected by the task filter", "A"),
    ];
    medalign_stages::kinds::examples::write_examples(&examples_dir.join("data.parquet"), &rows)
        .unwrap();
    let url = &server.base_url;
    let generate: GenerateConfig = serde_yaml::from_str(&format!(
        "llm: {{backend: openai, base_url: '{url}', model: gen-1, backoff_ms: 5}}\n\
         generators:\n  - {{name: reference, source: reference}}\n  - {{name: low, temperature: 1.0}}\n"
    ))
    .unwrap();
    let judge: JudgeConfig = serde_yaml::from_str(&format!(
        "judges:\n  - {{name: a, llm: {{backend: openai, base_url: '{url}', model: judge-a}}}}\n  \
         - {{name: b, llm: {{backend: openai, base_url: '{url}', model: judge-b}}}}\n"
    ))
    .unwrap();
    let pair: PairConfig = serde_yaml::from_str("margin: 0.5\ngold_margin: 1.5\n").unwrap();

    let (gen_dir, judge_dir, pair_dir) =
        (root.join("generate"), root.join("judge"), root.join("pair"));
    let go = |first: bool| {
        let g =
            run(&generate, &gen_dir, vec![("examples", "examples", &examples_dir)], "candidates");
        let c_dir = gen_dir.join("candidates");
        let j = run(&judge, &judge_dir, vec![("responses", "candidates", &c_dir)], "judgments");
        let j_dir = judge_dir.join("judgments");
        let p = run(
            &pair,
            &pair_dir,
            vec![("judgments", "judgments", &j_dir), ("responses", "candidates", &c_dir)],
            "pairs",
        );
        if first {
            assert_eq!(
                (g["candidates"].as_u64(), g["requests_sent"].as_u64()),
                (Some(12), Some(6)),
                "{g:?}"
            );
            assert_eq!(
                j["requests_sent"].as_u64(),
                Some(32),
                "24 first answers, 6 fed back once, 1 twice: {j:?}"
            );
        } else {
            assert_eq!(g["requests_sent"].as_u64(), Some(0));
            assert_eq!(
                j["requests_sent"].as_u64(),
                Some(3),
                "only the verdict that failed validation is asked again: {j:?}"
            );
        }
        (j, p)
    };
    let (j, p) = go(true);
    assert_eq!(server.requests(), 38);

    let judgments = read_judgments(&judge_dir.join("judgments/data.parquet")).unwrap();
    let failed: Vec<_> = judgments.iter().filter(|r| r.status == "failed").collect();
    assert_eq!(failed.len(), 3, "judge a never parses i4's low answer: 3 metrics");
    assert!(failed.iter().all(|r| r.candidate_id == "i4#low"
        && r.raw.as_deref() == Some("no idea")
        && r.attempts == 3));
    assert!(failed[0].error.as_deref().unwrap().contains("no JSON object"));
    assert!(judgments
        .iter()
        .filter(|r| r.judge == "b" && r.generator == "low")
        .all(|r| r.attempts == 2 && r.status == "ok"));
    assert_eq!(j["judgments_failed"].as_u64(), Some(3));
    assert!(j.contains_key("agreement.empathy.a~b.kappa"), "{j:?}");
    let agreement: Value =
        serde_json::from_slice(&std::fs::read(judge_dir.join("judgments/agreement.json")).unwrap())
            .unwrap();
    assert_eq!(agreement.as_array().unwrap().len(), 4);

    let pairs = read_pairs(&pair_dir.join("pairs/data.parquet")).unwrap();
    let tier = |id: &str| pairs.iter().find(|p| p.prompt_id == id).map(|p| p.tier.as_str());
    assert_eq!([tier("s1"), tier("s2"), tier("i1")], [Some("gold"); 3]);
    assert_eq!([tier("i2"), tier("i3"), tier("i4")], [None, Some("silver"), Some("silver")]);
    let s1 = pairs.iter().find(|p| p.prompt_id == "s1").unwrap();
    assert_eq!(
        (s1.kind.as_str(), s1.chosen_generator.as_str(), s1.rejected.starts_with("Sure")),
        ("safety", "reference", true)
    );
    let i4 = pairs.iter().find(|p| p.prompt_id == "i4").unwrap();
    assert_eq!(i4.judges, vec!["b".to_string()], "judge a failed on one side");
    let n = |k: &str| p[k].as_u64().unwrap();
    assert_eq!(
        (n("prompts"), n("pairs"), n("gold"), n("silver"), n("ties_dropped"), n("unpaired")),
        (6, 5, 3, 2, 1, 0)
    );
    assert_eq!(n("prompts"), n("pairs") + n("ties_dropped") + n("unpaired"));
    let candidates = read_candidates(&gen_dir.join("candidates/data.parquet")).unwrap();
    assert!(pairs.iter().all(|p| candidates
        .iter()
        .any(|c| c.id == p.chosen_id && c.response.as_deref() == Some(&p.chosen))));

    let (_, p2) = go(false);
    assert_eq!(
        server.requests(),
        41,
        "the rerun is answered from the cache but for the rejected verdict's 3 requests"
    );
    assert_eq!(p, p2);
}
