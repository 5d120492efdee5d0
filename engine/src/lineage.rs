//! Where an artifact came from: the tree of upstream artifacts with kinds, params, keys, times and
//! input files, as text, JSON, Graphviz dot or Mermaid.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::Result;
use crate::key::FileIngredient;
use crate::store::Store;

/// One artifact in a lineage tree.
#[derive(Clone, Debug, Serialize)]
pub struct LineageNode {
    /// Cache key.
    pub key: String,
    /// False when the record is gone from the store (the tree stops there).
    pub present: bool,
    /// Stage id that made it.
    pub stage: String,
    /// Stage kind.
    pub kind: String,
    /// Kind implementation version.
    pub version: u32,
    /// Resolved params.
    pub params: serde_json::Value,
    /// When it finished.
    pub finished: String,
    /// How long it ran.
    pub seconds: f64,
    /// Files it read, with content hashes.
    pub input_files: Vec<FileIngredient>,
    /// Output name -> content hash.
    pub outputs: BTreeMap<String, String>,
    /// Files of the outputs' run records (timings, logs), as `output/path`: kept, not hashed.
    pub run_files: Vec<String>,
    /// Figures it reported.
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// The output of the process that built it (a batch job's log), if the store has it.
    pub log: Option<String>,
    /// Its inputs.
    pub inputs: Vec<LineageEdge>,
}

/// An input of an artifact.
#[derive(Clone, Debug, Serialize)]
pub struct LineageEdge {
    /// The slot it fills.
    pub slot: String,
    /// Which output of the upstream artifact.
    pub output: String,
    /// Artifact kind.
    pub kind: String,
    /// The upstream artifact.
    pub from: LineageNode,
}

/// The lineage of `key`.
pub fn lineage(store: &Store, key: &str) -> Result<LineageNode> {
    let Some(rec) = store.record(key)? else {
        return Ok(LineageNode {
            key: key.to_string(),
            present: false,
            stage: String::new(),
            kind: String::new(),
            version: 0,
            params: serde_json::Value::Null,
            finished: String::new(),
            seconds: 0.0,
            input_files: Vec::new(),
            outputs: BTreeMap::new(),
            run_files: Vec::new(),
            metrics: BTreeMap::new(),
            log: None,
            inputs: Vec::new(),
        });
    };
    let mut inputs = Vec::new();
    for i in &rec.ingredients.inputs {
        inputs.push(LineageEdge {
            slot: i.slot.clone(),
            output: i.output.clone(),
            kind: i.kind.clone(),
            from: lineage(store, &i.key)?,
        });
    }
    let log = crate::logs::path(store, &rec.stage, &rec.key);
    Ok(LineageNode {
        log: log.is_file().then(|| log.display().to_string()),
        key: rec.key,
        present: true,
        stage: rec.stage,
        kind: rec.ingredients.kind,
        version: rec.ingredients.version,
        params: rec.ingredients.params,
        finished: rec.finished,
        seconds: rec.seconds,
        input_files: rec.ingredients.files,
        run_files: rec
            .outputs
            .iter()
            .flat_map(|(k, v)| v.run_files.iter().map(move |f| format!("{k}/{}", f.path)))
            .collect(),
        outputs: rec.outputs.into_iter().map(|(k, v)| (k, v.hash)).collect(),
        metrics: rec.metrics,
        inputs,
    })
}

/// The tree for people.
pub fn render_text(node: &LineageNode) -> String {
    let mut out = String::new();
    text(node, "", "", &mut out);
    out
}

fn text(n: &LineageNode, first: &str, rest: &str, out: &mut String) {
    if !n.present {
        out.push_str(&format!("{first}{} (record no longer in the store)\n", short(&n.key)));
        return;
    }
    out.push_str(&format!(
        "{first}{} [{} v{}] {}  finished {} in {:.1}s\n",
        n.stage,
        n.kind,
        n.version,
        short(&n.key),
        n.finished,
        n.seconds
    ));
    let params = serde_json::to_string(&n.params).unwrap_or_default();
    out.push_str(&format!("{rest}  params: {params}\n"));
    for f in &n.input_files {
        out.push_str(&format!(
            "{rest}  file {} = {} ({} bytes, blake3 {})\n",
            f.param,
            f.path,
            f.bytes,
            short(&f.hash)
        ));
    }
    for (name, hash) in &n.outputs {
        out.push_str(&format!("{rest}  output {name}: blake3 {}\n", short(hash)));
    }
    if !n.run_files.is_empty() {
        out.push_str(&format!("{rest}  run record: {}\n", n.run_files.join(", ")));
    }
    if let Some(log) = &n.log {
        out.push_str(&format!("{rest}  log: {log}\n"));
    }
    for (k, e) in n.inputs.iter().enumerate() {
        let last = k + 1 == n.inputs.len();
        let (branch, cont) = if last { ("└─ ", "   ") } else { ("├─ ", "│  ") };
        let label =
            format!("{rest}{branch}{} <- {}.{} ({}): ", e.slot, e.from.stage, e.output, e.kind);
        text(&e.from, &label, &format!("{rest}{cont}"), out);
    }
}

fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

fn edges(
    n: &LineageNode,
    nodes: &mut BTreeMap<String, String>,
    out: &mut BTreeSet<(String, String, String)>,
) {
    let label = if n.present {
        format!("{} [{}]\\n{}", n.stage, n.kind, short(&n.key))
    } else {
        format!("missing\\n{}", short(&n.key))
    };
    nodes.insert(short(&n.key).to_string(), label);
    for e in &n.inputs {
        out.insert((
            short(&e.from.key).to_string(),
            short(&n.key).to_string(),
            format!("{} -> {}", e.output, e.slot),
        ));
        edges(&e.from, nodes, out);
    }
}

/// Graphviz dot.
pub fn render_dot(node: &LineageNode) -> String {
    let (mut nodes, mut es) = (BTreeMap::new(), BTreeSet::new());
    edges(node, &mut nodes, &mut es);
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
    for (id, label) in &nodes {
        out.push_str(&format!("  \"{id}\" [label=\"{label}\"];\n"));
    }
    for (a, b, label) in &es {
        out.push_str(&format!("  \"{a}\" -> \"{b}\" [label=\"{label}\"];\n"));
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart.
pub fn render_mermaid(node: &LineageNode) -> String {
    let (mut nodes, mut es) = (BTreeMap::new(), BTreeSet::new());
    edges(node, &mut nodes, &mut es);
    let mut out = String::from("flowchart LR\n");
    for (id, label) in &nodes {
        out.push_str(&format!("  k{id}[\"{}\"]\n", label.replace("\\n", "<br/>")));
    }
    for (a, b, label) in &es {
        out.push_str(&format!("  k{a} -->|{label}| k{b}\n"));
    }
    out
}
