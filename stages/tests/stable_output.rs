//! Speed work must not change what the stages write: every column of every row that ingest and dedupe
//! produce from the samples in `data/` (and a synthetic corpus with untidy whitespace, accents and
//! exact and near duplicates) is hashed, and the digest is pinned. A change that alters output on
//! purpose bumps the stage kind's `VERSION` and the digest here.

use std::fmt::Write as _;

use medalign_stages::dedupe::{dedupe, DedupeConfig};
use medalign_stages::ingest::IngestConfig;
use medalign_stages::kinds::examples::Example;

const SAMPLES: &str = "{sources: [{path: data/medqa_us_4options.jsonl, format: medqa}, \
    {path: data/pubmedqa_ori_pqal.json, format: pubmedqa}, {path: data/medmcqa.jsonl, format: medmcqa}, \
    {path: data/meddialog_en.txt, format: meddialog}, {path: data/mmlu, format: mmlu}, \
    {path: data/openai_chat.jsonl, format: openai_chat, name: chat}, {path: data/alpaca.json, format: alpaca}, \
    {path: data/preference.jsonl, format: preference}, {path: data/medsafetybench, format: medsafetybench}, \
    {path: synthetic.jsonl, format: medmcqa, name: synthetic}], on_error: quarantine}";

/// MedMCQA lines with every kind of text normalization at work, repeats and one-word edits.
fn synthetic() -> String {
    let stems = [
        "A 45-year-old man has chest pain radiating to the left arm",
        "Me\u{301}nie\u{300}re disease presents with  vertigo,\ttinnitus and hearing loss",
        "  Which drug reverses heparin?\r\n\r\n\r\nGive the antidote ",
        "Fever\u{00a0}and cough since two days\u{200b} in a child",
        "Caf\u{e9} au lait spots and axillary freckling suggest which disorder",
    ];
    let mut out = String::new();
    for i in 0..400usize {
        let stem = stems[i % stems.len()];
        let q = match i % 4 {
            0 => format!("{stem} (case {})", i / 8),
            1 => format!("{stem} (case {}) today", i / 8),
            _ => format!("{stem} (case {i})"),
        };
        let cop = if i == 7 { 9 } else { 1 + i % 4 };
        let line = serde_json::json!({"id": format!("s{}", i.min(398)), "question": q, "opa": "Protamine", "opb": " Vitamin K ",
            "opc": "Idarucizumab", "opd": "Andexanet", "cop": cop, "exp": if i % 3 == 0 { "See  text" } else { "" },
            "subject_name": "Medicine", "topic_name": if i % 2 == 0 { serde_json::Value::Null } else { "Drugs".into() }});
        writeln!(out, "{line}").unwrap();
    }
    out
}

fn put(h: &mut blake3::Hasher, s: &str) {
    h.update(&(s.len() as u64).to_le_bytes());
    h.update(s.as_bytes());
}

fn put_opt(h: &mut blake3::Hasher, s: Option<&str>) {
    put(h, s.unwrap_or("<none>"));
}

fn put_example(h: &mut blake3::Hasher, e: &Example) {
    for s in [&e.id, &e.source, &e.task, &e.origin, &e.original, &e.hash] {
        put(h, s);
    }
    for m in &e.messages {
        put(h, &m.role);
        put(h, &m.content);
    }
    for c in &e.choices {
        put(h, c);
    }
    for s in [&e.context, &e.answer, &e.explanation, &e.rejected, &e.subject, &e.split] {
        put_opt(h, s.as_deref());
    }
}

#[test]
fn ingest_and_dedupe_output_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("synthetic.jsonl"), synthetic()).unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cfg: IngestConfig = serde_yaml::from_str(SAMPLES).unwrap();
    let ingested = cfg
        .ingest(|p| if p == "synthetic.jsonl" { dir.path().join(p) } else { repo.join(p) })
        .unwrap();
    let mut h = blake3::Hasher::new();
    for (name, c) in &ingested.counts {
        put(&mut h, &format!("{name} {} {} {}", c.rows_in, c.rows_out, c.rows_rejected));
    }
    for r in &ingested.rejected {
        for s in [&r.source, &r.origin, &r.reason, &r.record] {
            put(&mut h, s);
        }
    }
    for e in &ingested.examples {
        put_example(&mut h, e);
    }
    let out = dedupe(&DedupeConfig::default(), ingested.examples, &[], 7);
    for e in &out.kept {
        put_example(&mut h, e);
    }
    for r in &out.removed {
        put_example(&mut h, &r.example);
        put(&mut h, &format!("{} {:?} {:?}", r.reason, r.matched_id, r.score));
    }
    let summary = format!(
        "kept {}, removed {}, rejected {}",
        out.kept.len(),
        out.removed.len(),
        ingested.rejected.len()
    );
    assert_eq!(
        (summary.as_str(), h.finalize().to_hex().to_string().as_str()),
        (
            "kept 471, removed 9, rejected 2",
            "f9d721463f84cf159c72f9b7fa418ba77073a5a6504c25d5c102c562d9ecd965"
        )
    );
}
