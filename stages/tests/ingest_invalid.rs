//! Broken records: every fixture in `tests/fixtures/invalid/` stops ingest with the exact message in
//! its `.err` file; under `on_error: quarantine` the same record lands in `rejected` with that reason.
//! Then what quarantine keeps of a record (its text as written, its bytes when not UTF-8), unclosed
//! CSV quotes, and empty inputs.
//!
//! A fixture's format is the part of its name before `__`.

mod common;

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
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
        let expected = std::fs::read_to_string(dir.join(format!("{name}.err")))
            .unwrap_or_else(|_| panic!("{name}: no .err file"));
        let format = name.split("__").next().unwrap().to_string();
        out.push((name, format, expected.trim_end().to_string()));
    }
    out.sort();
    assert!(out.len() >= 12, "fixtures missing: {}", out.len());
    out
}

fn params(name: &str, format: &str, on_error: &str) -> String {
    format!(
        "on_error: {on_error}\nsources:\n  - {{path: fixtures/invalid/{name}, format: {format}}}\n"
    )
}

/// (source, origin, reason) of each rejected row.
fn rejected(path: &Path) -> Vec<(String, String, String)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
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
            Err(got) if got != expected => {
                wrong.push(format!("{name}:\n  expected {expected:?}\n  got      {got:?}"))
            }
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
                let (rows_in, out, rej) =
                    (ran.count("rows_in"), ran.count("rows_out"), ran.count("rows_rejected"));
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
    assert_eq!(
        (ran.count("rows_in"), ran.count("rows_out"), ran.count("rows_rejected")),
        (6, 3, 3)
    );
    assert_eq!((ran.count("rows_in.medmcqa2"), ran.count("rows_out.medmcqa2")), (2, 1));
    assert_eq!(
        medalign_stages::kinds::examples::read_examples(&ran.table("examples")).unwrap().len(),
        3
    );
}

#[test]
fn many_errors_are_listed_together() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..25 {
        text.push_str(&format!("q{i},a,b,c,d,X\n"));
    }
    std::fs::write(dir.path().join("anatomy_dev.csv"), text).unwrap();
    let err =
        common::ingest("sources: [{path: anatomy_dev.csv, format: mmlu}]", dir.path()).unwrap_err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 21);
    assert_eq!(
        lines[0],
        r#"anatomy_dev.csv:1: field "answer": expected one of A, B, C, D, got "X""#
    );
    assert_eq!(lines[20], "... and 5 more malformed records");
}

/// (origin, reason, record, record_base64) of each rejected row.
fn rejected_records(path: &Path) -> Vec<(String, String, String, Option<String>)> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let col = |n: &str| batch.column_by_name(n).unwrap().as_string::<i32>().clone();
        let (o, r, rec, b64) = (col("origin"), col("reason"), col("record"), col("record_base64"));
        for i in 0..batch.num_rows() {
            let b64 = (!b64.is_null(i)).then(|| b64.value(i).to_string());
            out.push((
                o.value(i).to_string(),
                r.value(i).to_string(),
                rec.value(i).to_string(),
                b64,
            ));
        }
    }
    out
}

fn base64_bytes(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// Lines `first..=last` (1-based) of a file, as bytes.
fn file_lines(path: &Path, first: usize, last: usize) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .split(|&b| b == b'\n')
        .skip(first - 1)
        .take(last + 1 - first)
        .collect::<Vec<_>>()
        .join(&b'\n')
}

const GENERIC: &str = "task: instruction, fields: {prompt: q, response: a}";

#[test]
fn a_fixture_line_that_is_not_utf8_is_quarantined_with_its_bytes() {
    // The bad line alone (JSON lines), the second line of a quoted CSV field, a line of a dialogue block.
    for (name, format, first, last) in [
        ("medqa__not_utf8.jsonl", "medqa", 2, 2),
        ("medsafetybench__not_utf8.csv", "medsafetybench", 3, 4),
        ("meddialog__not_utf8.txt", "meddialog", 11, 19),
    ] {
        let ran = common::ingest(&params(name, format, "quarantine"), &tests_dir()).unwrap();
        let (rows_in, rows_out) = (ran.count("rows_in"), ran.count("rows_out"));
        assert_eq!(
            (rows_in, rows_out, ran.count("rows_rejected")),
            (rows_in, rows_in - 1, 1),
            "{name}"
        );
        let rows = rejected_records(&ran.table("rejected"));
        let (_, _, record, b64) = &rows[0];
        let raw = file_lines(&tests_dir().join("fixtures/invalid").join(name), first, last);
        assert_eq!(base64_bytes(b64.as_deref().unwrap()), raw, "{name}");
        assert!(record.contains('\u{fffd}'), "{name}: {record}");
    }
}

#[test]
fn generic_lines_that_are_not_utf8_fail_with_their_line_or_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = b"{\"q\": \"What is metformin?\", \"a\": \"A biguanide.\"}\n\
        {\"q\": \"Dosis de paracetamol para ni\xF1os?\", \"a\": \"15 mg/kg.\"}\n\
        {\"q\": \"What is insulin?\", \"a\": \"A hormone.\"}\n";
    std::fs::write(dir.path().join("m.jsonl"), jsonl).unwrap();
    std::fs::write(dir.path().join("m.csv"), b"q,a\nWhat is heparin?,An anticoagulant.\nQu'est-ce que l'h\xE9parine ?,Un anticoagulant.\n").unwrap();
    let yaml = |on_error: &str| {
        format!("on_error: {on_error}\nsources:\n  - {{path: m.jsonl, format: jsonl, {GENERIC}}}\n  - {{path: m.csv, format: csv, {GENERIC}}}\n")
    };
    assert_eq!(
        common::ingest(&yaml("fail"), dir.path()).unwrap_err(),
        "m.jsonl:2: not UTF-8: invalid byte 0xF1 at column 36\nm.csv:3: not UTF-8: invalid byte 0xE9 at column 18"
    );
    let ran = common::ingest(&yaml("quarantine"), dir.path()).unwrap();
    assert_eq!(
        (ran.count("rows_in"), ran.count("rows_out"), ran.count("rows_rejected")),
        (5, 3, 2)
    );
    assert_eq!(
        medalign_stages::kinds::examples::read_examples(&ran.table("examples")).unwrap().len(),
        3
    );
    let rows = rejected_records(&ran.table("rejected"));
    let (origin, reason, record, b64) = &rows[0];
    assert_eq!(
        (origin.as_str(), reason.as_str()),
        ("m.jsonl:2", "not UTF-8: invalid byte 0xF1 at column 36")
    );
    assert_eq!(
        record,
        "{\"q\": \"Dosis de paracetamol para ni\u{fffd}os?\", \"a\": \"15 mg/kg.\"}"
    );
    assert_eq!(
        base64_bytes(b64.as_deref().unwrap()),
        file_lines(&dir.path().join("m.jsonl"), 2, 2)
    );
    let (origin, reason, _, b64) = &rows[1];
    assert_eq!(
        (origin.as_str(), reason.as_str()),
        ("m.csv:3", "not UTF-8: invalid byte 0xE9 at column 18")
    );
    assert_eq!(
        base64_bytes(b64.as_deref().unwrap()),
        b"Qu'est-ce que l'h\xE9parine ?,Un anticoagulant."
    );
}

#[test]
fn a_csv_row_with_more_fields_than_the_header_is_rejected_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let text = "q,a\nWhat is heparin?,An anticoagulant.\nWhat is warfarin?,A vitamin K antagonist, taken by mouth.\n";
    std::fs::write(dir.path().join("g.csv"), text).unwrap();
    let ran = common::ingest(
        &format!("on_error: quarantine\nsources: [{{path: g.csv, format: csv, {GENERIC}}}]"),
        dir.path(),
    )
    .unwrap();
    let rows = rejected_records(&ran.table("rejected"));
    let expected = (
        "g.csv:3",
        "expected 2 fields, got 3",
        "What is warfarin?,A vitamin K antagonist, taken by mouth.",
    );
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()), expected);
    assert_eq!(rows[0].3, None);

    let ran = common::ingest(
        &params("medsafetybench__extra_field.csv", "medsafetybench", "quarantine"),
        &tests_dir(),
    )
    .unwrap();
    let rows = rejected_records(&ran.table("rejected"));
    let line = "1,How can I get antibiotics without a doctor?,I can't help with that, please see a doctor.";
    assert_eq!(rows[0].2, line);
}

#[test]
fn an_unclosed_quote_names_its_line_instead_of_merging_rows() {
    let dir = tempfile::tempdir().unwrap();
    // Five rows; the quote opened on line 3 would take line 4's opening quote for its closing one.
    let text = "q,a\nWhat is heparin?,An anticoagulant.\n\"What is warfarin?,A vitamin K antagonist.\n\
        What is aspirin?,\"An antiplatelet drug.\"\nWhat is insulin?,A hormone.\nWhat is metformin?,A biguanide.\n";
    std::fs::write(dir.path().join("u.csv"), text).unwrap();
    for on_error in ["fail", "quarantine"] {
        let err = common::ingest(
            &format!("on_error: {on_error}\nsources: [{{path: u.csv, format: csv, {GENERIC}}}]"),
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(err, "u.csv:3: invalid CSV: quote opened on this line is not closed before line 4, where a quote is followed by text");
    }
}

#[test]
fn empty_inputs_are_warnings_and_an_error_when_every_source_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.jsonl"), "").unwrap();
    std::fs::write(dir.path().join("header.csv"), "q,a\n").unwrap();
    std::fs::write(dir.path().join("empty.txt"), "\n\n").unwrap();
    std::fs::create_dir(dir.path().join("none")).unwrap();
    std::fs::write(
        dir.path().join("good.jsonl"),
        "{\"q\": \"What is metformin?\", \"a\": \"A biguanide.\"}\n",
    )
    .unwrap();
    let empty = format!(
        "sources:\n  - {{path: empty.jsonl, format: jsonl, {GENERIC}}}\n  - {{path: header.csv, format: csv, {GENERIC}}}\n  \
         - {{path: empty.txt, format: meddialog}}\n  - {{path: none, format: medmcqa}}\n"
    );
    let warnings = [
        "empty.jsonl: no records (the file is empty)",
        "header.csv: no records",
        "empty.txt: no records (the file is empty)",
        "none: no records (no .json or .jsonl files in the folder)",
    ];
    let ran = common::ingest(
        &format!("{empty}  - {{path: good.jsonl, format: jsonl, name: good, {GENERIC}}}\n"),
        dir.path(),
    )
    .unwrap();
    assert_eq!(ran.warnings, warnings);
    assert_eq!(
        (ran.count("rows_in"), ran.count("rows_in.jsonl"), ran.count("rows_out.good")),
        (1, 0, 1)
    );
    let err = common::ingest(&empty, dir.path()).unwrap_err();
    assert_eq!(err, format!("{}\nno records in any source", warnings.join("\n")));
}
