//! Seeded mutations of `pipelines/medalign.yaml` through `medalign validate`: whatever the bytes, the
//! binary exits 0 (valid) or 1 (problems), never panics or aborts, and every problem it prints
//! names `file:line:column`.

use std::path::{Path, PathBuf};
use std::process::Command;

const CASES: usize = 300;
const SEED: u64 = 0x6d65_6461_6c69_676e;

/// xorshift64*: small, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn fragment(&mut self) -> &'static [u8] {
        FRAGMENTS[self.below(FRAGMENTS.len())]
    }
}

/// Fragments that YAML, the manifest reader and the stage params each give meaning to.
const FRAGMENTS: &[&[u8]] = &[
    b":",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b"&a ",
    b"*a",
    b"*nope",
    b"${",
    b"${model}",
    b"${a}",
    b"}",
    b"\"",
    b"'",
    b"\t",
    b"#",
    b"---\n",
    b"...\n",
    b"!!binary ",
    b"!custom ",
    b"~",
    b"null",
    b"-1",
    b"1e999",
    b"0x10",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc3",
    b"\0",
    b"\r",
    b"kind: \"\"",
    b"kind: ingest",
    b"id: x",
    b"inputs: [nope]",
    b"params: 3",
    b"store: /dev/null",
    b"seed: -5",
    b"  ",
    b"\n",
    b"? ",
    b"|\n",
    b">-\n",
    b"<<: *a\n",
    b"x: &a [*a]\n",
];

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut text = base.to_vec();
    for _ in 0..1 + rng.below(3) {
        let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
        let at = rng.below(text.len() + 1);
        text = match rng.below(8) {
            // Drop a line.
            0 => {
                let k = rng.below(lines.len());
                lines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != k)
                    .flat_map(|(_, l)| l.to_vec())
                    .collect()
            }
            // Repeat a line elsewhere.
            1 => {
                let (from, to) = (rng.below(lines.len()), rng.below(lines.len()));
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                out.insert(to, lines[from].to_vec());
                out.concat()
            }
            // Swap two lines.
            2 => {
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                let (a, b) = (rng.below(out.len()), rng.below(out.len()));
                out.swap(a, b);
                out.concat()
            }
            // Cut the file short.
            3 => text[..at].to_vec(),
            // Delete a few bytes.
            4 => {
                let end = (at + 1 + rng.below(8)).min(text.len());
                [&text[..at], &text[end..]].concat()
            }
            // Re-indent a line.
            5 => {
                let k = rng.below(lines.len());
                let indent = rng.below(6);
                let mut out: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
                let trimmed: Vec<u8> = out[k].iter().copied().skip_while(|&b| b == b' ').collect();
                out[k] = [vec![b' '; indent], trimmed].concat();
                out.concat()
            }
            // Insert a meaningful fragment.
            _ => [&text[..at], rng.fragment(), &text[at..]].concat(),
        };
    }
    text
}

/// Whether a line reads `<file>:<line>:<column>: <message>`.
fn located(line: &str, file: &str) -> bool {
    let Some(rest) = line.strip_prefix(file).and_then(|r| r.strip_prefix(':')) else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let number = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p != "0")
    };
    number(parts.next())
        && number(parts.next())
        && parts.next().is_some_and(|m| m.starts_with(' ') && m.len() > 1)
}

#[test]
fn mutated_manifests_never_panic_and_every_problem_has_a_place() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let base = std::fs::read(root.join("pipelines/medalign.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(SEED);
    let (mut valid, mut invalid) = (0, 0);
    let mut failures = Vec::new();
    for case in 0..CASES {
        let text = mutate(&base, &mut rng);
        let name = format!("case{case}.yaml");
        std::fs::write(dir.path().join(&name), &text).unwrap();
        let out = validate(dir.path(), &name, &root.join("data/real"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let problem = match out.status.code() {
            Some(0) => {
                valid += 1;
                None
            }
            Some(1) => {
                invalid += 1;
                let summary = format!("error: {name} has ");
                stderr
                    .lines()
                    .find(|l| !located(l, &name) && !l.starts_with(&summary))
                    .map(|l| format!("unlocated line: {l}"))
            }
            code => Some(format!("exit {code:?}")),
        };
        if let Some(problem) = problem {
            let kept = dir.path().join(&name);
            failures.push(format!(
                "{name}: {problem}\n{stderr}\n(manifest kept at {})",
                kept.display()
            ));
        }
    }
    if !failures.is_empty() {
        let kept = dir.keep();
        panic!(
            "{} of {CASES} cases failed (in {}):\n{}",
            failures.len(),
            kept.display(),
            failures.join("\n")
        );
    }
    assert!(
        valid > 0 && invalid > CASES / 2,
        "the mutations should mostly break the manifest: {valid} valid, {invalid} invalid"
    );
}

fn validate(dir: &Path, name: &str, data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medalign"))
        .args(["validate", name, "--var"])
        .arg(format!("data={}", data.display()))
        .current_dir(dir)
        .output()
        .unwrap()
}
