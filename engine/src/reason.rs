//! Why a stage is stale: the difference between the ingredients it last ran with and today's.

use serde_json::Value as Json;

use crate::key::Ingredients;

/// One difference between two sets of ingredients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Something of the stage itself: params, files, version, env, seed.
    Local(String),
    /// An upstream artifact differs; `cause` is the root cause upstream, when known.
    Input {
        /// Upstream stage id.
        stage: String,
        /// The root cause, e.g. `ingest.params.sources[1].path content changed`.
        cause: Option<String>,
    },
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Local(s) => f.write_str(s),
            Change::Input { stage, cause: Some(c) } => {
                write!(f, "input {stage} changed (because {c})")
            }
            Change::Input { stage, cause: None } => write!(f, "input {stage} changed"),
        }
    }
}

/// The changes from `prev` to `now`; `cause_of` gives the root cause of an upstream stage's change.
pub fn diff(
    prev: &Ingredients,
    now: &Ingredients,
    cause_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<Change> {
    let mut out = Vec::new();
    if prev.kind != now.kind {
        out.push(Change::Local(format!("kind {} -> {}", prev.kind, now.kind)));
    }
    if prev.version != now.version {
        out.push(Change::Local(format!(
            "implementation version {} -> {}",
            prev.version, now.version
        )));
    }
    diff_json("params", &prev.params, &now.params, &mut out);
    for f in &now.files {
        match prev.files.iter().find(|p| p.param == f.param) {
            Some(p) if p.hash != f.hash => {
                out.push(Change::Local(format!("params.{} content changed", f.param)))
            }
            Some(_) => {}
            None => out.push(Change::Local(format!("params.{} is a new input file", f.param))),
        }
    }
    for p in &prev.files {
        if !now.files.iter().any(|f| f.param == p.param) {
            out.push(Change::Local(format!("params.{} is no longer an input file", p.param)));
        }
    }
    let same_inputs = prev.inputs.len() == now.inputs.len()
        && prev.inputs.iter().zip(&now.inputs).all(|(a, b)| a.slot == b.slot && a.kind == b.kind);
    if same_inputs {
        for (a, b) in prev.inputs.iter().zip(&now.inputs) {
            if a.hash != b.hash {
                out.push(Change::Input { stage: b.stage.clone(), cause: cause_of(&b.stage) });
            }
        }
    } else {
        let names = |v: &Ingredients| {
            v.inputs.iter().map(|i| i.stage.as_str()).collect::<Vec<_>>().join(", ")
        };
        out.push(Change::Local(format!("inputs [{}] -> [{}]", names(prev), names(now))));
    }
    for (k, v) in &now.env {
        match prev.env.get(k) {
            Some(p) if p != v => out.push(Change::Local(format!("env {k} changed {p} -> {v}"))),
            Some(_) => {}
            None => out.push(Change::Local(format!("env {k} is new ({v})"))),
        }
    }
    for k in prev.env.keys() {
        if !now.env.contains_key(k) {
            out.push(Change::Local(format!("env {k} is no longer relevant")));
        }
    }
    if prev.seed != now.seed {
        out.push(Change::Local(format!("seed {} -> {}", prev.seed, now.seed)));
    }
    out
}

fn diff_json(path: &str, a: &Json, b: &Json, out: &mut Vec<Change>) {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            for (k, vb) in y {
                let p = format!("{path}.{k}");
                match x.get(k) {
                    Some(va) => diff_json(&p, va, vb, out),
                    None => out.push(Change::Local(format!("{p} set to {}", show(vb)))),
                }
            }
            for (k, va) in x {
                if !y.contains_key(k) {
                    out.push(Change::Local(format!("{path}.{k} removed (was {})", show(va))));
                }
            }
        }
        (Json::Array(x), Json::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_json(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        (Json::Number(x), Json::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(Change::Local(format!("{path} changed {} -> {}", show(a), show(b)))),
    }
}

/// A value as the user would write it: `1e-4`, `"text"`, `[1, 2]`, shortened when long.
fn show(v: &Json) -> String {
    let s = match v {
        Json::Number(n) if !n.is_i64() && !n.is_u64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let plain = format!("{f}");
            let sci = format!("{f:e}");
            if sci.len() < plain.len() {
                sci
            } else {
                plain
            }
        }
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(57).collect::<String>())
    } else {
        s
    }
}

/// The root cause as seen from downstream: the stage's first own change, qualified with its id
/// (`ingest.params.sources[1].path content changed`, `sft implementation version 3 -> 4`).
pub fn root_cause(stage: &str, changes: &[Change]) -> Option<String> {
    changes
        .iter()
        .find_map(|c| match c {
            Change::Local(s) if s.starts_with("params.") => Some(format!("{stage}.{s}")),
            Change::Local(s) => Some(format!("{stage} {s}")),
            Change::Input { .. } => None,
        })
        .or_else(|| {
            changes.iter().find_map(|c| match c {
                Change::Input { cause, .. } => cause.clone(),
                Change::Local(_) => None,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{FileIngredient, InputIngredient};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn ing(lr: f64, file_hash: &str, input_hash: &str) -> Ingredients {
        Ingredients {
            kind: "train".into(),
            version: 3,
            params: json!({"lr": lr, "lora": {"rank": 8}}),
            inputs: vec![InputIngredient {
                slot: "examples".into(),
                stage: "dedupe".into(),
                output: "examples".into(),
                kind: "examples".into(),
                key: "k".into(),
                hash: input_hash.into(),
            }],
            files: vec![FileIngredient {
                param: "sources[1].path".into(),
                path: "/x".into(),
                bytes: 1,
                hash: file_hash.into(),
            }],
            env: BTreeMap::new(),
            seed: 0,
        }
    }

    #[test]
    fn names_each_change_the_way_users_write_it() {
        let a = ing(1e-4, "f1", "h1");
        let mut b = ing(2e-4, "f2", "h2");
        b.version = 4;
        let cause = |s: &str| {
            (s == "dedupe").then(|| "ingest.params.sources[1].path content changed".to_string())
        };
        let text: Vec<String> = diff(&a, &b, &cause).iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            [
                "implementation version 3 -> 4",
                "params.lr changed 1e-4 -> 2e-4",
                "params.sources[1].path content changed",
                "input dedupe changed (because ingest.params.sources[1].path content changed)",
            ]
        );
        assert_eq!(
            root_cause("sft", &diff(&a, &b, &cause)).unwrap(),
            "sft implementation version 3 -> 4"
        );
    }

    #[test]
    fn equal_numbers_spelled_differently_are_no_change() {
        let mut a = ing(1e-4, "f", "h");
        let mut b = ing(1e-4, "f", "h");
        a.params["epochs"] = json!(2);
        b.params["epochs"] = json!(2.0);
        assert!(diff(&a, &b, &|_| None).is_empty());
    }
}
