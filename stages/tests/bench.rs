//! Throughput figures, run by hand: `stages/tests/bench/run.sh` runs these and the datasketch
//! comparison in one go (see `stages/BENCHMARKS.md`); alone:
//! `cargo nextest run --release -p medalign-stages --run-ignored only -E 'binary(bench)' --no-capture`.
//!
//! `MEDALIGN_BENCH_DIR` keeps the near-duplicate corpus and the pairs found, for
//! `tests/bench/datasketch_lsh.py` to compare with datasketch's MinHashLSH. Each figure comes with the
//! CPU time it took (user + system, all threads), since the machine may be shared.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use medalign_stages::dedupe::minhash::{
    optimal_bands, set_jaccard, shingle_set, LshIndex, MinHasher,
};
use medalign_stages::dedupe::text::words;
use medalign_stages::dedupe::{dedupe, DedupeConfig, NearConfig};
use medalign_stages::ingest::IngestConfig;

/// The binary's allocator (`src/main.rs`), so these figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        s >> 33
    }
}

/// CPU seconds this process has used so far (user + system, every thread); 0 where `/proc` is missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime and stime, in clock ticks of 1/100 s
}

const VOCAB: &str = "patient fever cough pain chest abdomen dose tablet insulin glucose kidney liver heart lung blood \
    pressure rash nausea vomiting headache dizziness fatigue weight infection antibiotic viral bacterial chronic acute \
    daily weekly history examination diagnosis treatment therapy surgery imaging culture serum anemia asthma stroke";

#[test]
#[ignore]
fn ingest_and_exact_dedupe_1m() {
    medalign_model::process::keep_freed_memory(); // as the binary does
    let n = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let vocab: Vec<&str> = VOCAB.split_whitespace().collect();
    let mut next = rng(1);
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(dir.path().join("medmcqa.jsonl")).unwrap());
    for i in 0..n {
        // one record in 10 repeats an earlier one (a planted exact duplicate)
        let k = if i % 10 == 9 { i - 5 } else { i };
        let mut q: Vec<&str> =
            (0..25).map(|j| vocab[(k * 31 + j * 7 + (k >> j % 8)) % vocab.len()]).collect();
        q.push(if next() % 2 == 0 { "?" } else { "." });
        let line = serde_json::json!({"id": format!("r{i}"), "question": format!("Case {k}: {}", q.join(" ")),
            "opa": "Amoxicillin", "opb": "Doxycycline", "opc": "Ceftriaxone", "opd": "Azithromycin", "cop": 1 + k % 4,
            "choice_type": "single", "exp": null, "subject_name": "Medicine", "topic_name": null});
        writeln!(f, "{line}").unwrap();
    }
    drop(f);
    let cfg: IngestConfig =
        serde_json::from_str(r#"{"sources": [{"path": "medmcqa.jsonl", "format": "medmcqa"}]}"#)
            .unwrap();
    let (t, cpu0) = (Instant::now(), cpu_seconds());
    let ingested = cfg.ingest(|p| dir.path().join(p)).unwrap();
    let (t_ingest, cpu1) = (t.elapsed().as_secs_f64(), cpu_seconds());
    let dd = DedupeConfig {
        near: NearConfig { enabled: false, ..Default::default() },
        ..Default::default()
    };
    let t = Instant::now();
    let out = dedupe(&dd, ingested.examples, &[], 0);
    let (t_dedupe, cpu2) = (t.elapsed().as_secs_f64(), cpu_seconds());
    let t = Instant::now();
    medalign_stages::kinds::examples::write_examples(&dir.path().join("out.parquet"), &out.kept)
        .unwrap();
    let t_write = t.elapsed().as_secs_f64();
    let total = t_ingest + t_dedupe;
    let cpu = cpu2 - cpu0;
    println!(
        "1M synthetic MedMCQA records on {} threads: ingest {t_ingest:.2}s ({:.2} CPU-s), exact dedupe {t_dedupe:.2}s \
         ({:.2} CPU-s) -> {:.0} records/s wall, {:.0} records per CPU-second; Parquet write of {} rows {t_write:.2}s; \
         {} exact duplicates",
        rayon::current_num_threads(),
        cpu1 - cpu0,
        cpu2 - cpu1,
        n as f64 / total,
        n as f64 / cpu.max(1e-9),
        out.kept.len(),
        out.count("exact_duplicate")
    );
    assert_eq!(out.count("exact_duplicate"), n / 10);
}

#[test]
#[ignore]
fn dedupe_shared_data() {
    let Some(dir) = common::shared_data() else { return };
    let yaml = "{sources: [{path: pubmedqa/pqal_train_pool.json, format: pubmedqa}, {path: mmlu_medical, format: mmlu}, \
        {path: medsafetybench/train, format: medsafetybench}, {path: medicationqa/medicationqa_even.jsonl, format: jsonl, \
        name: medicationqa, task: instruction, fields: {prompt: Question, response: Answer}}]}";
    let cfg: IngestConfig = serde_yaml::from_str(yaml).unwrap();
    let rows = cfg.ingest(|p| dir.join(p)).unwrap().examples;
    let n = rows.len();
    let t = Instant::now();
    let out = dedupe(&DedupeConfig::default(), rows, &[], 0);
    let secs = t.elapsed().as_secs_f64();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &out.removed {
        *reasons.entry(r.reason.as_str()).or_default() += 1;
    }
    println!(
        "shared/data: {n} rows deduped in {secs:.3}s ({:.0} rows/s); removed {reasons:?}",
        n as f64 / secs
    );
}

#[test]
#[ignore]
fn minhash_lsh_corpus() {
    let (n, dups) = (20_000usize, 2_000usize);
    let vocab: Vec<&str> = VOCAB.split_whitespace().collect();
    let mut next = rng(9);
    let mut docs: Vec<String> = (0..n)
        .map(|_| {
            (0..80).map(|_| vocab[next() as usize % vocab.len()]).collect::<Vec<_>>().join(" ")
        })
        .collect();
    for i in 0..dups {
        let mut w: Vec<&str> = docs[i].split(' ').collect();
        for _ in 0..(1 + i % 3) {
            let at = next() as usize % w.len();
            w[at] = "edited";
        }
        docs.push(w.join(" "));
    }
    let (perms, shingle, threshold) = (128, 5, 0.8);
    let recall_weight: f64 =
        std::env::var("MEDALIGN_RECALL_WEIGHT").map_or(0.99, |v| v.parse().unwrap());
    let (b, r) = optimal_bands(threshold, perms, recall_weight); // the dedupe default; 0.5 is datasketch's own choice
    let t = Instant::now();
    let hasher = MinHasher::new(perms, shingle, 0);
    use rayon::prelude::*;
    let sigs: Vec<(Vec<u32>, Vec<u32>)> = docs
        .par_iter()
        .map(|d| {
            let w = words(d).hashes;
            (hasher.signature(&w), shingle_set(&hasher, &w))
        })
        .collect();
    let mut index = LshIndex::new(b, r);
    let mut pairs = Vec::new();
    for (i, (s, set)) in sigs.iter().enumerate() {
        for k in index.candidates(s) {
            if set_jaccard(set, &sigs[k as usize].1) >= threshold {
                pairs.push((k, i as u32));
            }
        }
        index.insert(s, i as u32);
    }
    let secs = t.elapsed().as_secs_f64();
    println!("MinHash LSH ({perms} perms, {shingle}-word shingles, b={b} r={r}): {} docs in {secs:.3}s ({:.0} docs/s), {} pairs", docs.len(), docs.len() as f64 / secs, pairs.len());
    if let Ok(out) = std::env::var("MEDALIGN_BENCH_DIR") {
        let out = std::path::Path::new(&out);
        std::fs::write(out.join("corpus.txt"), docs.join("\n") + "\n").unwrap();
        let text: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
        std::fs::write(out.join("pairs_rust.txt"), text).unwrap();
        std::fs::write(out.join("rust_seconds.txt"), format!("{secs}\n")).unwrap();
    }
}
