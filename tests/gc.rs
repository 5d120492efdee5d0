//! `medalign gc` and the checkpoints of a killed run whose key nothing reaches: `--dry-run` lists
//! the work dir and deletes nothing, then gc frees it; the text and the JSON report both say so.

use std::path::Path;
use std::process::Command;

use medalign_engine::Store;
use serde_json::{json, Value};

/// `medalign gc --json` on a store: the report and the text on stderr.
fn gc(store: &Path, dry_run: bool) -> (Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_medalign"));
    cmd.args(["gc", "--json", "--store"]).arg(store);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "medalign gc failed:\n{text}");
    (serde_json::from_slice(&out.stdout).unwrap(), text)
}

#[test]
fn gc_lists_and_frees_the_work_dirs_of_keys_nothing_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = "ab".repeat(32);
    let work = store.work_dir(&key).unwrap();
    std::fs::write(work.join("checkpoint.bin"), vec![0u8; 2_000_000]).unwrap();

    let (report, text) = gc(dir.path(), true);
    assert_eq!(report["work"], json!([[key, 2_000_000]]), "{report:#}");
    assert!(
        text.contains("would free work dir abababababab (checkpoints, 2000000 bytes)"),
        "{text}"
    );
    assert!(
        text.contains("would free 0 artifact(s), 1 work dir(s) and 0 leftover(s), 2.0 MB"),
        "{text}"
    );
    assert!(work.join("checkpoint.bin").is_file(), "a dry run deletes nothing");

    let (report, text) = gc(dir.path(), false);
    assert_eq!(
        (&report["work"], &report["bytes"]),
        (&json!([[key, 2_000_000]]), &json!(2_000_000)),
        "{report:#}"
    );
    assert!(text.contains("freed work dir abababababab"), "{text}");
    assert!(!work.exists());
}
