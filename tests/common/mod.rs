//! Shared by the binary's tests: the default pipeline shrunk to the tiny test model.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `medalign` binary, run in `dir` with `args`, the tiny model and the real data as vars.
pub fn medalign_in(dir: &Path, model: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medalign"));
    cmd.args(args)
        .arg("--var")
        .arg(format!("model={}", model.display()))
        .arg("--var")
        .arg(format!("data={}", root().join("data/real").display()))
        .current_dir(dir);
    cmd
}

/// The default manifest with smaller budgets that fit the tiny model's 128-token context.
pub fn shrunk(beta: &str) -> String {
    let text = std::fs::read_to_string(root().join("pipelines/medalign.yaml")).unwrap();
    let replacements = [
        (
            "source_limits: {medsafetybench: 200, medquad: 300, rxqa: 300, pubmedqa: 120}",
            "source_limits: {medsafetybench: 6, medquad: 4, drugqa: 4, rxqa: 4, pubmedqa: 2}",
        ),
        ("max_seq_len: 512", "max_seq_len: 96"),
        ("max_seq_len: 256", "max_seq_len: 96"),
        ("max_steps: 56", "max_steps: 2"),
        ("max_steps: 30", "max_steps: 2"),
        ("checkpoint_every: 28", "checkpoint_every: 1"),
        ("checkpoint_every: 15", "checkpoint_every: 1"),
        ("eval_every: 28", "eval_every: 1"),
        ("eval_every: 15", "eval_every: 1"),
        (
            "source_limits: {medsafetybench: 96, medquad: 24, rxqa: 48, medquad_drugs: 160}",
            "source_limits: {medsafetybench: 8, medquad: 3, drugqa: 3, rxqa: 3, medquad_drugs: 3}",
        ),
        ("max_tokens: 48", "max_tokens: 8"),
        ("safety_limit: null", "safety_limit: 3\n      limit: 2"),
        ("beta: 0.1", beta),
    ];
    let mut out = text.clone();
    for (from, to) in replacements {
        assert!(
            out.contains(from),
            "the default pipeline no longer has {from:?}: update this test"
        );
        out = out.replace(from, to);
    }
    out
}
