//! `medalign bench engine`: the engine's speed targets, measured with the test kinds in a temp dir.
//!
//! - a no-op `run` of a fully cached 8-stage pipeline (manifest load, compile, resolve, all cached);
//! - `status` and gc's reachability over a store holding 10,000 artifacts;
//! - BLAKE3 of a large file, beside `md5sum` of the same file (DVC's hash) as the peer.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::error::{EngineError, IoContext, Result};
use crate::exec::RunOptions;
use crate::executor::run;
use crate::kind::KindRegistry;
use crate::record::{ArtifactRecord, RECORD_FORMAT};
use crate::store::{write_atomic, Store, RECORD_FILE};

/// The figures.
#[derive(Clone, Debug, Serialize)]
pub struct EngineBench {
    /// Median wall milliseconds of a no-op run of the cached 8-stage pipeline (load + compile + run).
    pub noop_run_ms_median: f64,
    /// Slowest of those runs.
    pub noop_run_ms_max: f64,
    /// Artifacts in the store for the status figure.
    pub store_artifacts: usize,
    /// Milliseconds of `status` over that store.
    pub status_ms: f64,
    /// Milliseconds of gc's reachability pass (dry run) over that store.
    pub gc_dry_run_ms: f64,
    /// Size of the hashed file.
    pub hash_bytes: u64,
    /// BLAKE3 throughput, GB/s (10^9 bytes), file in the page cache.
    pub blake3_gb_per_s: f64,
    /// `md5sum` throughput on the same file, GB/s, when md5sum is installed.
    pub md5sum_gb_per_s: Option<f64>,
}

/// Runs the benchmark under `dir` with a file of `hash_bytes`.
pub fn engine_bench(dir: &Path, hash_bytes: u64, artifacts: usize) -> Result<EngineBench> {
    let mut registry = KindRegistry::new();
    crate::testkit::register(&mut registry);
    let manifest = dir.join("bench.yaml");
    let mut yaml = String::from("name: bench\nstages:\n  - id: s0\n    kind: source\n    params: {text: \"Bench text\\n\"}\n");
    for i in 1..7 {
        yaml.push_str(&format!(
            "  - id: s{i}\n    kind: transform\n    inputs: [s{}]\n    params: {{op: upper}}\n",
            i - 1
        ));
    }
    yaml.push_str("  - id: s7\n    kind: join\n    inputs: [s0, s3, s6]\n");
    std::fs::write(&manifest, yaml).at(&manifest)?;
    let load = || crate::plan::load(&manifest, &registry, &BTreeMap::new());
    run(&load()?, &registry, &RunOptions::default())?;
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let reports = run(&load()?, &registry, &RunOptions::default())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if reports.iter().any(|r| r.status != crate::report::StageStatus::Cached) {
            return Err(EngineError::Usage("bench: the no-op run was not fully cached".into()));
        }
    }
    times.sort_by(f64::total_cmp);

    let plan = load()?;
    let store = Store::open(&plan.store_dir)?;
    let template = store.record(&store.read_ref("bench", "s7").expect("ref").key)?.expect("record");
    fill_store(&store, &template, artifacts)?;
    let t = Instant::now();
    crate::status::status(&plan)?;
    let status_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    crate::gc::gc(&store, true)?;
    let gc_dry_run_ms = t.elapsed().as_secs_f64() * 1e3;

    let big = dir.join("big.bin");
    write_big(&big, hash_bytes)?;
    crate::filehash::hash_file(&big)?; // warm the page cache
    let t = Instant::now();
    crate::filehash::hash_file(&big)?;
    let blake3_gb_per_s = hash_bytes as f64 / t.elapsed().as_secs_f64() / 1e9;
    let t = Instant::now();
    let md5 = std::process::Command::new("md5sum").arg(&big).output();
    let md5sum_gb_per_s = md5
        .ok()
        .filter(|o| o.status.success())
        .map(|_| hash_bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
    std::fs::remove_file(&big).at(&big)?;
    Ok(EngineBench {
        noop_run_ms_median: times[times.len() / 2],
        noop_run_ms_max: times[times.len() - 1],
        store_artifacts: store.keys()?.len(),
        status_ms,
        gc_dry_run_ms,
        hash_bytes,
        blake3_gb_per_s,
        md5sum_gb_per_s,
    })
}

/// Adds `n` artifacts shaped like `template`, chained in groups of 8 so lineage walks have depth.
fn fill_store(store: &Store, template: &ArtifactRecord, n: usize) -> Result<()> {
    let mut prev = String::new();
    for i in 0..n {
        let key = blake3::hash(format!("bench-artifact-{i}").as_bytes()).to_hex().to_string();
        let mut rec = template.clone();
        rec.format = RECORD_FORMAT.to_string();
        rec.key = key.clone();
        rec.stage = format!("s{}", i % 8);
        for input in &mut rec.ingredients.inputs {
            input.key = prev.clone();
        }
        let dir = store.artifact_dir(&key);
        std::fs::create_dir_all(dir.join("text")).at(&dir)?;
        std::fs::write(dir.join("text/text.txt"), key.as_bytes()).at(&dir)?;
        write_atomic(
            &dir.join(RECORD_FILE),
            &serde_json::to_vec(&rec).expect("record serializes"),
        )?;
        prev = if i % 8 == 7 { String::new() } else { key };
    }
    Ok(())
}

fn write_big(path: &Path, bytes: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).at(path)?);
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut left = bytes;
    while left > 0 {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).at(path)?;
        left -= n as u64;
    }
    f.flush().at(path)
}
