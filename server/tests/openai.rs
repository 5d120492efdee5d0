//! The official `openai` Python client against the server (tests/openai_client.py), on the tiny
//! model. Runs when `MEDALIGN_PY` names a Python with `openai` installed (e.g.
//! `$HOME/.cache/medalign-venv/bin/python`); otherwise it says so and passes.

mod common;

#[test]
fn the_official_openai_client_works_against_the_server() {
    let Some(python) = std::env::var_os("MEDALIGN_PY") else {
        eprintln!("skipped: set MEDALIGN_PY to a Python with `openai` installed to run tests/openai_client.py");
        return;
    };
    let s = common::tiny_server(common::options());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(format!("http://{}/v1", s.addr()))
        .arg(&s.model)
        .output()
        .expect("MEDALIGN_PY runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "openai_client.py failed:\n{text}");
    assert!(text.contains("openai client: ok"), "{text}");
    s.server.stop().unwrap();
}
