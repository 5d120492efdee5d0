//! Broken records: every fixture in `tests/fixtures/invalid/` stops ingest with the exact message in
//! its `.err` file; under `on_error: quarantine` the same record lands in `rejected` with that reason.
//!
//! A fixture's format is the part of its name before `__`.

mod common;

use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixtures() -> Vec<(String, String, String)> {
    let dir = tests_dir().join("fixtures/invalid");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".err") {
            continue;
        }
        let expected = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_else(|_| panic!("{name}: no .err file"));
        let format = name.split("__").next().unwrap().to_string();
        out.push((name, format, expected.trim_end().to_string()));
    }
    out.sort();
    assert!(out.len() >= 12, "fixtures missing: {}", out.len());
    out
}

fn params(name: &str, format: &str, on_error: &str) -> String {
    format!("on_error: {on_error}\nsources:\n  - {{path: fixtures/invalid/{name}, format: {format}}}\n")
}

/// (source, origin, reason) of each rejected row.
fn rejected(path: &Path) -> Vec<(String, String, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap().build().unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (s, o, r) = (col("source"), col("origin"), col("reason"));
        for i in 0..batch.num_rows() {
            out.push((s.value(i).to_string(), o.value(i).to_string(), r.value(i).to_string()));
        }
    }
    out
}

#[test]
fn each_fixture_fails_with_its_message() {
    let mut wrong = Vec::new();
    for (name, format, expected) in fixtures() {
        match common::ingest(&params(&name, &format, "fail"), &tests_dir()) {
            Ok(_) => wrong.push(format!("{name}: ingest succeeded, expected {expected:?}")),
            Err(got) if got != expected => wrong.push(format!("{name}:\n  expected {expected:?}\n  got      {got:?}")),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn quarantine_sets_bad_records_aside_with_the_same_reason() {
    for (name, format, expected) in fixtures() {
        match common::ingest(&params(&name, &format, "quarantine"), &tests_dir()) {
            // A file that is not even readable as its format cannot be counted: it always stops.
            Err(got) => assert_eq!(got, expected, "{name}"),
            Ok(ran) => {
                let (rows_in, out, rej) = (ran.count("rows_in"), ran.count("rows_out"), ran.count("rows_rejected"));
                assert_eq!(rows_in, out + rej, "{name}");
                assert_eq!(rej, 1, "{name}");
                assert_eq!(ran.count(&format!("rows_rejected.{format}")), 1, "{name}");
                let rows = rejected(&ran.table("rejected"));
                assert_eq!(rows.len(), 1);
                let (source, origin, reason) = &rows[0];
                assert_eq!(source, &format);
                assert_eq!(format!("{origin}: {reason}"), expected, "{name}");
            }
        }
    }
}

#[test]
fn quarantine_counts_add_up_across_sources() {
    let yaml = "on_error: quarantine\nsources:\n  \
        - {path: fixtures/invalid/medmcqa__cop_out_of_range.jsonl, format: medmcqa}\n  \
        - {path: fixtures/invalid/medmcqa__missing_question.jsonl, format: medmcqa, name: medmcqa2}\n  \
        - {path: fixtures/invalid/mmlu__bad_answer_dev.csv, format: mmlu}\n";
    let ran = common::ingest(yaml, &tests_dir()).unwrap();
    assert_eq!((ran.count("rows_in"), ran.count("rows_out"), ran.count("rows_rejected")), (6, 3, 3));
    assert_eq!((ran.count("rows_in.medmcqa2"), ran.count("rows_out.medmcqa2")), (2, 1));
    assert_eq!(medalign_stages::table::read_examples(&ran.table("examples")).unwrap().len(), 3);
}

#[test]
fn many_errors_are_listed_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..25 {
        text.push_str(&format!("q{i},a,b,c,d,X\n"));
    }
    std::fs::write(dir.path().join("anatomy_dev.csv"), text).unwrap();
    let err = common::ingest("sources: [{path: anatomy_dev.csv, format: mmlu}]", dir.path()).unwrap_err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 21);
    assert_eq!(lines[0], r#"anatomy_dev.csv:1: field "answer": expected one of A, B, C, D, got "X""#);
    assert_eq!(lines[20], "... and 5 more malformed records");
}
