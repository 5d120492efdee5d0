//! Every manifest under tests/fixtures/invalid must fail `medalign validate` with exactly the
//! messages in its `.expected` file (run with `UPDATE_EXPECTED=1` to rewrite them after a deliberate
//! change, then review the diff). The default pipeline must validate.

use std::path::Path;
use std::process::Command;

fn medalign() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medalign"))
}

#[test]
fn invalid_manifests_fail_with_their_exact_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 10, "fixtures found: {fixtures:?}");
    let mut mismatches = Vec::new();
    for f in fixtures {
        let name = f.file_name().unwrap().to_str().unwrap();
        let out = medalign().arg("validate").arg(name).current_dir(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: exit code");
        // Messages may hold absolute paths; the fixtures' own directory is dropped to keep them portable.
        let got =
            String::from_utf8(out.stderr).unwrap().replace(&format!("{}/", dir.display()), "");
        let expected_file = f.with_extension("expected");
        if std::env::var_os("UPDATE_EXPECTED").is_some() {
            std::fs::write(&expected_file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&expected_file)
            .unwrap_or_else(|_| panic!("{} missing", expected_file.display()));
        if got != want {
            mismatches.push(format!("== {name}\n-- expected\n{want}-- got\n{got}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_default_pipeline_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = medalign()
        .args(["validate", "pipelines/medalign.yaml"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_manifest_with_a_byte_order_mark_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("pipelines/medalign.yaml")).unwrap();
    std::fs::write(dir.path().join("bom.yaml"), format!("\u{feff}{text}")).unwrap();
    let out = medalign()
        .args(["validate", "bom.yaml", "--var"])
        .arg(format!("data={}", root.join("data/real").display()))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
