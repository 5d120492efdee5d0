//! Semantic dedupe and clinical relevance: params and their errors, the cache key's encoder facts, the
//! pass with a deterministic bag-of-words embedder, and planted paraphrases with the real
//! all-MiniLM-L6-v2 when it is cached (skipped with a note otherwise).

use std::collections::BTreeMap;

use medalign_engine::{CheckContext, InputArtifact, RunContext, StageConfig, StageProgress};
use medalign_model::fetch::KnownEncoder;
use medalign_stages::dedupe::{dedupe, dedupe_with, DedupeConfig, Embedder};
use medalign_stages::kinds::examples::{read_examples, write_examples};
use medalign_stages::kinds::examples::{Example, Message};

fn qa(id: &str, source: &str, q: &str, a: &str) -> Example {
    Example {
        id: id.into(),
        source: source.into(),
        task: "instruction".into(),
        messages: vec![Message::new("user", q), Message::new("assistant", a)],
        origin: format!("{source}.jsonl:1"),
        original: "{}".into(),
        ..Default::default()
    }
    .with_hash()
}

fn errors(yaml: &str) -> Vec<(String, String)> {
    let cfg: DedupeConfig = serde_yaml::from_str(yaml).unwrap();
    let cx = CheckContext::new(std::env::temp_dir());
    cfg.check(&cx).into_iter().map(|e| (e.path, e.message)).collect()
}

#[test]
fn dedupe_semantic_is_off_by_default_and_keys_nothing() {
    let cfg: DedupeConfig = serde_yaml::from_str("{}").unwrap();
    assert!(!cfg.semantic.enabled && cfg.relevance.topics.is_empty());
    assert_eq!(
        (cfg.semantic.model.as_str(), cfg.semantic.threshold, cfg.semantic.batch),
        ("all-minilm-l6-v2", 0.95, 32)
    );
    let cx = CheckContext::new(std::env::temp_dir());
    assert!(cfg.env_facts(&cx).is_empty() && cfg.input_files(&cx).is_empty());
    let on: DedupeConfig = serde_yaml::from_str("semantic: {enabled: true}").unwrap();
    let facts = on.env_facts(&cx);
    assert!(
        facts["dedupe.encoder"]
            .ends_with("sha256:53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        "{facts:?}"
    );
    let topics_only: DedupeConfig =
        serde_yaml::from_str("relevance: {topics: [cardiology]}").unwrap();
    assert_eq!(topics_only.env_facts(&cx), facts);
}

#[test]
fn dedupe_semantic_model_directory_is_hashed_as_input_files() {
    let cfg: DedupeConfig = serde_yaml::from_str("semantic: {enabled: true, model: enc}").unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("enc");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let cx = CheckContext::new(root.path().to_path_buf());
    assert!(cfg.check(&cx).is_empty());
    let files: Vec<String> = cfg
        .input_files(&cx)
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into())
        .collect();
    assert_eq!(files, ["config.json", "tokenizer.json", "model.safetensors"]);
    assert!(cfg.env_facts(&cx).is_empty());
}

#[test]
fn dedupe_semantic_bad_params_are_named_by_path() {
    let e = errors(
        "semantic: {enabled: true, threshold: 1.5, batch: 0, model: no-such-encoder}\nrelevance: {topics: ['cardiology', ' '], min_score: 2}",
    );
    let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "semantic.threshold",
            "semantic.batch",
            "semantic.model",
            "relevance.min_score",
            "relevance.topics[1]"
        ],
        "{e:?}"
    );
    assert_eq!(e[0].1, "expected a cosine in (0, 1], got 1.5");
    assert_eq!(e[1].1, "expected 1..4096, got 0");
    assert_eq!(
        e[2].1,
        "\"no-such-encoder\" is neither a known encoder (all-minilm-l6-v2) nor a directory with config.json, tokenizer.json and model.safetensors"
    );
    assert_eq!(e[3].1, "expected a cosine in [-1, 1], got 2");
    assert_eq!(e[4].1, "expected a topic description, got an empty string");
    let e = errors("relevance: {min_score: 0.2}");
    assert_eq!(
        e,
        [(
            "relevance.min_score".to_string(),
            "needs relevance.topics: a list of topic descriptions".to_string()
        )]
    );
    // an unknown model is only an error when a step would load it
    assert!(errors("semantic: {model: no-such-encoder}").is_empty());
}

/// Hashes lowercased words into 64 buckets and normalizes: same words, same vector, whatever the order.
struct BagOfWords;

impl Embedder for BagOfWords {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; 64];
                for w in t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                    v[(blake3::hash(w.to_lowercase().as_bytes()).as_bytes()[0] % 64) as usize] +=
                        1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter().map(|x| x / n).collect()
            })
            .collect())
    }
}

#[test]
fn dedupe_semantic_pass_with_a_fake_embedder() {
    let rows = vec![
        qa("web:1", "web", "warfarin ibuprofen bleeding risk", "avoid the combination"),
        qa("curated:1", "curated", "Bleeding risk: ibuprofen, warfarin?", "the combination: avoid"),
        qa("web:2", "web", "levothyroxine timing breakfast", "empty stomach first"),
    ];
    let cfg: DedupeConfig = serde_yaml::from_str(
        "priority: [curated]\nsemantic: {enabled: true, threshold: 0.99}\nrelevance: {topics: ['levothyroxine breakfast timing'], min_score: 0.3}",
    )
    .unwrap();
    // without an embedder the embedding steps do not run
    assert_eq!(dedupe(&cfg, rows.clone(), &[], 1).kept.len(), 3);
    let out = dedupe_with(&cfg, rows, &[], 1, Some(&BagOfWords)).unwrap();
    let removed: Vec<(&str, &str, Option<&str>)> = out
        .removed
        .iter()
        .map(|r| (r.example.id.as_str(), r.reason.as_str(), r.matched_id.as_deref()))
        .collect();
    // the curated copy survives; the web copy is a semantic duplicate of it; the survivor is off-topic
    assert_eq!(
        removed,
        [
            ("web:1", "semantic_duplicate", Some("curated:1")),
            ("curated:1", "low_relevance", Some("levothyroxine breakfast timing"))
        ]
    );
    assert!((out.removed[0].score.unwrap() - 1.0).abs() < 1e-6);
    assert!(out.removed[1].score.unwrap() < 0.3);
    assert_eq!(out.kept.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["web:2"]);
    let rel = out.relevance.unwrap();
    assert_eq!(rel.len(), 1);
    assert!(rel[0] >= 0.3);
}

fn planted_rows() -> Vec<Example> {
    vec![
        qa(
            "a:1",
            "a",
            "What is the first-line drug treatment for high blood pressure in adults?",
            "A thiazide diuretic, ACE inhibitor, ARB or calcium channel blocker.",
        ),
        qa(
            "a:2",
            "a",
            "How should I take levothyroxine?",
            "Take it on an empty stomach, 30 to 60 minutes before breakfast.",
        ),
        qa(
            "a:3",
            "a",
            "Is it safe to take ibuprofen with warfarin?",
            "No: NSAIDs such as ibuprofen raise the risk of bleeding with warfarin.",
        ),
        qa(
            "a:4",
            "a",
            "What is the first-line drug treatment for type 2 diabetes in adults?",
            "Metformin, with lifestyle changes.",
        ),
        qa(
            "a:5",
            "a",
            "What is the first-line drug treatment for major depression in adults?",
            "An SSRI or psychotherapy, or both.",
        ),
        qa("a:6", "a", "What is the capital of France?", "Paris."),
        qa(
            "b:1",
            "b",
            "In adults, which medication is the first-line treatment for high blood pressure?",
            "A thiazide diuretic, an ACE inhibitor, an ARB or a calcium channel blocker.",
        ),
        qa(
            "b:2",
            "b",
            "How do I take my levothyroxine?",
            "Take it on an empty stomach 30-60 minutes before breakfast.",
        ),
        qa(
            "b:3",
            "b",
            "Can I take ibuprofen while on warfarin?",
            "No: ibuprofen and other NSAIDs raise the bleeding risk with warfarin.",
        ),
    ]
}

#[test]
fn dedupe_semantic_real_minilm_finds_planted_paraphrases() {
    let known = KnownEncoder::by_name("all-minilm-l6-v2").unwrap();
    if !known.is_cached() {
        eprintln!("skipped: all-MiniLM-L6-v2 is not cached at {} (run model/scripts/check_minilm.py or a dedupe stage with semantic.enabled to fetch it)", known.cached_dir().display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ex = tmp.path().join("ex");
    std::fs::create_dir_all(&ex).unwrap();
    write_examples(&ex.join("data.parquet"), &planted_rows()).unwrap();
    let cfg: DedupeConfig = serde_yaml::from_str(
        "semantic: {enabled: true, threshold: 0.9}\nrelevance:\n  topics: ['clinical medicine: diagnosis, treatment and drugs', 'patient safety and medication interactions', 'symptoms, diseases and their management']\n  min_score: 0.1",
    )
    .unwrap();
    let check = CheckContext::new(tmp.path().to_path_buf());
    assert!(cfg.check(&check).is_empty());
    let progress = StageProgress::hidden();
    let input = InputArtifact {
        stage: "i".into(),
        output: "examples".into(),
        kind: "examples".into(),
        key: "k".into(),
        dir: ex,
    };
    let mut cx = RunContext::standalone(
        &check,
        &progress,
        tmp.path(),
        BTreeMap::from([("examples", vec![input])]),
        &["examples", "removed"],
    )
    .unwrap();
    let t = std::time::Instant::now();
    cfg.run(&mut cx).unwrap();
    eprintln!(
        "dedupe with semantic + relevance on 9 rows: {:.2} s (model load included)",
        t.elapsed().as_secs_f64()
    );
    let removed = read_removed(&cx.output_table("removed"));
    let mut got: Vec<(String, String, Option<String>)> =
        removed.iter().map(|r| (r.0.clone(), r.1.clone(), r.2.clone())).collect();
    got.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (
                s("a:6"),
                s("low_relevance"),
                Some(s("clinical medicine: diagnosis, treatment and drugs"))
            ),
            (s("b:1"), s("semantic_duplicate"), Some(s("a:1"))),
            (s("b:2"), s("semantic_duplicate"), Some(s("a:2"))),
            (s("b:3"), s("semantic_duplicate"), Some(s("a:3"))),
        ],
        "{removed:#?}"
    );
    assert_eq!(read_examples(&cx.output_table("examples")).unwrap().len(), 5);
    for r in &removed {
        let score = r.3.unwrap();
        match r.1.as_str() {
            "semantic_duplicate" => assert!(score >= 0.9, "{score}"),
            _ => assert!(score < 0.1, "{score}"),
        }
    }
    let m = cx.metrics();
    assert_eq!(m["removed.semantic_duplicate"], 3);
    assert_eq!(m["removed.low_relevance"], 1);
    assert_eq!(m["rows_out"], 5);
    for k in ["relevance.mean", "relevance.min", "relevance.p50", "relevance.max"] {
        assert!(m[k].as_f64().unwrap() >= 0.1, "{k}: {m:?}");
    }
    eprintln!("metrics: {m:?}");
}

/// (id, reason, matched_id, score) of each row of a `removed` table.
fn read_removed(path: &std::path::Path) -> Vec<(String, String, Option<String>, Option<f64>)> {
    use arrow::array::{Array, Float64Array, StringArray};
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        let (id, reason, matched, score) =
            (col("id"), col("reason"), col("matched_id"), col("score"));
        let id = id.as_any().downcast_ref::<StringArray>().unwrap();
        let reason = reason.as_any().downcast_ref::<StringArray>().unwrap();
        let matched = matched.as_any().downcast_ref::<StringArray>().unwrap();
        let score = score.as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..batch.num_rows() {
            out.push((
                id.value(i).to_string(),
                reason.value(i).to_string(),
                matched.is_valid(i).then(|| matched.value(i).to_string()),
                score.is_valid(i).then(|| score.value(i)),
            ));
        }
    }
    out
}
