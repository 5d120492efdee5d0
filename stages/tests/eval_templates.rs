//! The eval prompts equal lm-evaluation-harness's byte for byte: sample records in the public
//! formats go through ingest, then `eval::template`; `fixtures/eval/harness_prompts.json` holds the
//! harness's own rendering of the same files (`stages/scripts/eval_vs_harness.py prompts`). Also the
//! errors bad eval rows get.

use std::path::{Path, PathBuf};

use medalign_stages::eval::data::EvalSet;
use medalign_stages::eval::template::{doc, Doc};
use medalign_stages::ingest::IngestConfig;
use medalign_stages::kinds::examples::{Example, Message};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn ingest(sources: serde_json::Value) -> Vec<Example> {
    let cfg: IngestConfig =
        serde_json::from_value(serde_json::json!({ "sources": sources })).unwrap();
    cfg.ingest(|p| fixtures().join(p)).unwrap().examples
}

fn docs(sources: serde_json::Value) -> Vec<Doc> {
    ingest(sources).iter().map(|e| doc(e).unwrap().unwrap()).collect()
}

fn harness() -> serde_json::Map<String, serde_json::Value> {
    let text = std::fs::read_to_string(fixtures().join("harness_prompts.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn expected(key: &str) -> String {
    harness()[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in harness_prompts.json"))
        .to_string()
}

#[test]
fn mmlu_prompts_match_the_harness() {
    let val = docs(serde_json::json!([{ "path": "mmlu/anatomy_val.csv", "format": "mmlu" }]));
    for (i, d) in val.iter().enumerate() {
        assert_eq!(d.template.task_name(), "mmlu_anatomy");
        assert_eq!(d.context(&[]), expected(&format!("mmlu_anatomy/{i}")), "item {i}");
        assert_eq!(d.choices, ["A", "B", "C", "D"]);
    }
    assert_eq!((val[0].gold, val[1].gold), (0, 1));
    let dev = docs(serde_json::json!([{ "path": "mmlu/anatomy_dev.csv", "format": "mmlu" }]));
    assert_eq!(dev[0].solved(), expected("mmlu_anatomy/solved_dev_0"));
    // One shot: description, the solved example, the few-shot delimiter, the question.
    let one_shot = val[0].context(&[&dev[0]]);
    let desc = "The following are multiple choice questions (with answers) about anatomy.\n\n";
    let question = expected("mmlu_anatomy/0")[desc.len()..].to_string();
    assert_eq!(one_shot, format!("{desc}{}\n\n{question}", expected("mmlu_anatomy/solved_dev_0")));
}

#[test]
fn pubmedqa_medqa_medmcqa_prompts_match_the_harness() {
    let p = docs(serde_json::json!([{ "path": "pubmedqa.json", "format": "pubmedqa" }]));
    assert_eq!(p[0].context(&[]), expected("pubmedqa/101"));
    assert_eq!(p[1].context(&[]), expected("pubmedqa/102"));
    assert_eq!(
        (p[0].choices.clone(), p[0].gold, p[1].gold),
        (vec!["yes".into(), "no".into(), "maybe".into()], 0, 2)
    );
    let q = docs(serde_json::json!([{ "path": "medqa.jsonl", "format": "medqa" }]));
    assert_eq!((q[0].context(&[]), q[0].gold), (expected("medqa_4options/0"), 1));
    let m = docs(serde_json::json!([{ "path": "medmcqa.jsonl", "format": "medmcqa" }]));
    assert_eq!(
        (m[0].context(&[]), m[0].gold, m[0].template.task_name()),
        (expected("medmcqa/0"), 0, "medmcqa".into())
    );
}

#[test]
fn rows_without_an_original_use_their_normalized_fields() {
    let e = Example {
        id: "x:1".into(),
        task: "mcq".into(),
        messages: vec![Message::new("user", "Which vitamin prevents scurvy?")],
        choices: vec!["Vitamin C".into(), "Vitamin D".into(), "Iron".into()],
        answer: Some("A".into()),
        original: "{}".into(),
        ..Default::default()
    };
    let d = doc(&e).unwrap().unwrap();
    assert_eq!(
        d.text,
        "Question: Which vitamin prevents scurvy?\nA. Vitamin C\nB. Vitamin D\nC. Iron\nAnswer:"
    );
    assert_eq!(d.choices, ["A", "B", "C"]);
}

#[test]
fn bad_eval_rows_name_file_line_and_field() {
    let mut rows =
        ingest(serde_json::json!([{ "path": "mmlu/anatomy_val.csv", "format": "mmlu" }]));
    rows[0].answer = Some("E".into());
    rows[1].choices.pop();
    let yes = Example {
        origin: "p.json:7".into(),
        task: "yes_no_maybe".into(),
        messages: vec![Message::new("user", "q?")],
        answer: Some("perhaps".into()),
        ..Default::default()
    };
    let unknown =
        Example { origin: "x.jsonl:3".into(), task: "essay".into(), ..Default::default() };
    rows.extend([yes, unknown]);
    let err = EvalSet::from_examples(rows, None, None).unwrap_err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            r#"mmlu/anatomy_val.csv:1: field "answer": expected one of A, B, C, D, got "E""#,
            r#"mmlu/anatomy_val.csv:2: field "choices": original record has 4 options, the row 3"#,
            r#"p.json:7: field "answer": expected one of yes, no, maybe, got "perhaps""#,
            r#"x.jsonl:3: field "task": unknown task "essay""#,
        ]
    );
}
