//! Caching end to end: what reruns after an edit, early cutoff, reasons, key invariance, failures.

mod common;

use common::{by_id, s, statuses, Project};
use medalign_engine::{RunOptions, StageStatus::*};

const CHAIN: &str = "
name: t
stages:
  - id: src
    kind: source
    params: {text: \"Hello\\n\"}
  - id: up
    kind: transform
    inputs: [src]
    params: {op: upper, lr: 1e-4}
  - id: side
    kind: transform
    inputs: [src]
    params: {op: lower}
  - id: out
    kind: join
    inputs: [up, side]
    params: {sep: \"|\"}
";

#[test]
fn second_run_is_fully_cached_and_outputs_are_right() {
    let p = Project::new(CHAIN);
    let first = p.run();
    assert_eq!(statuses(&first), s(&[("src", Ran), ("up", Ran), ("side", Ran), ("out", Ran)]));
    assert!(first.iter().all(|r| r.reason == "never run"));
    assert_eq!(p.text("out"), "HELLO\n|hello\n");
    let second = p.run();
    assert_eq!(
        statuses(&second),
        s(&[("src", Cached), ("up", Cached), ("side", Cached), ("out", Cached)])
    );
    assert_eq!(by_id(&second, "src").reason, "up to date");
    assert_eq!(by_id(&second, "src").metrics["chars"], 6);
}

#[test]
fn editing_one_stage_reruns_it_and_its_descendants_only() {
    let p = Project::new(CHAIN);
    p.run();
    p.edit(&CHAIN.replace("op: lower", "op: keep"));
    let st = p.status();
    assert_eq!(statuses(&st), s(&[("src", Fresh), ("up", Fresh), ("side", Stale), ("out", Stale)]));
    assert_eq!(by_id(&st, "side").reason, "params.op changed \"lower\" -> \"keep\"");
    assert_eq!(
        by_id(&st, "out").reason,
        "input side changed (because side.params.op changed \"lower\" -> \"keep\")"
    );
    let r = p.run();
    assert_eq!(statuses(&r), s(&[("src", Cached), ("up", Cached), ("side", Ran), ("out", Ran)]));
    assert_eq!(p.text("out"), "HELLO\n|Hello\n");
}

#[test]
fn identical_output_stops_the_rerun_early() {
    let p = Project::new(CHAIN);
    p.run();
    p.edit(&CHAIN.replace("lr: 1e-4", "lr: 2e-4"));
    assert_eq!(by_id(&p.status(), "up").reason, "params.lr changed 1e-4 -> 2e-4");
    let r = p.run();
    assert_eq!(statuses(&r), s(&[("src", Cached), ("up", Ran), ("side", Cached), ("out", Cached)]));
    assert_eq!(by_id(&r, "out").reason, "early cutoff: up reran with identical output");
}

#[test]
fn key_order_comments_and_number_spelling_do_not_change_keys() {
    let p = Project::new(CHAIN);
    let keys: Vec<_> = p.run().into_iter().map(|r| r.key).collect();
    p.edit(
        &CHAIN
            .replace(
                "params: {op: upper, lr: 1e-4}",
                "# the upper branch\n    params:\n      lr: 0.000100 # same\n      op: \"upper\"",
            )
            .replace("params: {sep: \"|\"}", "params: {sep: '|'}"),
    );
    let st = p.status();
    assert!(st.iter().all(|r| r.status == Fresh), "{st:#?}");
    assert_eq!(st.into_iter().map(|r| r.key).collect::<Vec<_>>(), keys);
}

#[test]
fn input_file_edits_rerun_with_the_root_cause_named() {
    let p =
        Project::new(&CHAIN.replace("params: {text: \"Hello\\n\"}", "params: {file: notes.txt}"));
    p.write("notes.txt", "Aspirin\n");
    p.run();
    assert_eq!(p.text("out"), "ASPIRIN\n|aspirin\n");
    p.write("notes.txt", "Ibuprofen\n");
    let st = p.status();
    assert_eq!(by_id(&st, "src").reason, "params.file content changed");
    assert_eq!(
        by_id(&st, "up").reason,
        "input src changed (because src.params.file content changed)"
    );
    let r = p.run();
    assert_eq!(statuses(&r), s(&[("src", Ran), ("up", Ran), ("side", Ran), ("out", Ran)]));
    assert_eq!(by_id(&r, "out").reason, "input up changed (because src.params.file content changed); input side changed (because src.params.file content changed)");
    assert_eq!(p.text("out"), "IBUPROFEN\n|ibuprofen\n");
}

#[test]
fn declared_environment_facts_are_part_of_the_key() {
    // Only `join` declares MEDALIGN_TEST_ENV relevant; this test is alone in its process under nextest.
    std::env::remove_var("MEDALIGN_TEST_ENV");
    let p = Project::new(CHAIN);
    p.run();
    std::env::set_var("MEDALIGN_TEST_ENV", "gpu");
    let st = p.status();
    assert_eq!(statuses(&st), s(&[("src", Fresh), ("up", Fresh), ("side", Fresh), ("out", Stale)]));
    assert_eq!(by_id(&st, "out").reason, "env test_env is new (gpu)");
    std::env::remove_var("MEDALIGN_TEST_ENV");
}

#[test]
fn a_failed_stage_publishes_nothing_and_skips_its_descendants() {
    let p = Project::new(&CHAIN.replace("op: lower", "op: lower, step_ms: 300, fail: \"out of memory (Authorization: Bearer sk-live-0123456789)\""));
    let r = p.run();
    assert_eq!(statuses(&r), s(&[("src", Ran), ("up", Ran), ("side", Failed), ("out", Skipped)]));
    // Said once (the summary names the stage), with no token in it, and with the time it ran.
    assert_eq!(by_id(&r, "side").reason, "out of memory (Authorization: Bearer [REDACTED])");
    assert!(by_id(&r, "side").seconds >= 0.3, "{}", by_id(&r, "side").seconds);
    assert_eq!(by_id(&r, "out").reason, "input side was not built");
    let store = p.store();
    assert_eq!(store.keys().unwrap().len(), 2);
    assert_eq!(std::fs::read_dir(store.root().join("tmp")).unwrap().count(), 0, "staging cleaned");
}

#[test]
fn tables_are_checked_against_their_schema_when_published() {
    let m = "name: t\nstages:\n  - {id: src, kind: source, params: {text: \"a\\nb\\n\"}}\n  - {id: tab, kind: table, inputs: [src]}\n";
    let p = Project::new(m);
    let r = p.run();
    assert_eq!(by_id(&r, "tab").status, Ran);
    assert_eq!(by_id(&r, "tab").metrics["rows"], 2);
    let bad =
        Project::new(&m.replace("inputs: [src]}", "inputs: [src], params: {wrong_schema: true}}"));
    let r = bad.run();
    let reason = &by_id(&r, "tab").reason;
    assert!(reason.starts_with("stage \"tab\": output \"rows\": "), "{reason}");
    assert!(
        reason.ends_with("does not match the schema: column \"line\" is Utf8, expected Int64"),
        "{reason}"
    );
}

#[test]
fn until_only_force_and_dry_run_select_stages() {
    let p = Project::new(CHAIN);
    let until = RunOptions { until: Some("up".into()), ..Default::default() };
    let dry = medalign_engine::dry_run(&p.plan(), &until).unwrap();
    assert_eq!(
        statuses(&dry),
        s(&[("src", WouldRun), ("up", WouldRun), ("side", Skipped), ("out", Skipped)])
    );
    assert_eq!(by_id(&dry, "up").reason, "input src changed (because src never run)");
    assert!(p.store().keys().unwrap().is_empty(), "dry run ran nothing");
    let r = p.run_with(until);
    assert_eq!(statuses(&r), s(&[("src", Ran), ("up", Ran), ("side", Skipped), ("out", Skipped)]));
    assert_eq!(by_id(&r, "side").reason, "not selected (--until up)");

    let only_out = RunOptions { only: Some("out".into()), ..Default::default() };
    let r = p.run_with(only_out.clone());
    assert_eq!(by_id(&r, "out").status, Failed);
    assert_eq!(
        by_id(&r, "out").reason,
        "input side was not built: build it first (e.g. --until side)"
    );
    let r = p.run_with(RunOptions { only: Some("side".into()), ..Default::default() });
    assert_eq!(
        statuses(&r),
        s(&[("src", Cached), ("up", Skipped), ("side", Ran), ("out", Skipped)])
    );
    assert_eq!(by_id(&p.run_with(only_out), "out").status, Ran);

    let r = p.run_with(RunOptions { force: vec!["side".into()], ..Default::default() });
    assert_eq!(statuses(&r), s(&[("src", Cached), ("up", Cached), ("side", Ran), ("out", Cached)]));
    assert_eq!(by_id(&r, "side").reason, "forced (--force)");
}
