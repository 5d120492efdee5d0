//! The manifest as written: names and references still strings, every node with its position.
//!
//! Parsing collects every structural problem (unknown keys, wrong types, missing fields) instead of
//! stopping at the first; [`crate::plan::compile`] turns a `RawManifest` into a typed `Plan`.

use std::collections::BTreeMap;

use super::vars::Vars;
use super::yaml::{Node, NodeValue, Pos};
use crate::diagnostic::Diagnostics;
use crate::executor::Executor;
use crate::params::{did_you_mean, unknown_key_message};
use crate::resources::Resources;

const TOP_KEYS: &[&str] = &["name", "store", "seed", "executor", "resources", "vars", "stages"];
const STAGE_KEYS: &[&str] = &["id", "kind", "inputs", "params", "resources"];

/// A parsed manifest, before stage kinds and references are resolved.
#[derive(Debug)]
pub struct RawManifest {
    /// Pipeline name.
    pub name: String,
    /// Store directory as written (relative to the manifest), if given.
    pub store: Option<String>,
    /// Where `store:` is, if given.
    pub store_pos: Option<Pos>,
    /// Pipeline seed, handed to every stage and part of every key.
    pub seed: u64,
    /// Where stages run unless the command line says otherwise.
    pub executor: Executor,
    /// Resource defaults for every stage.
    pub resources: Resources,
    /// The vars after command-line overrides.
    pub vars: Vars,
    /// The stages in document order.
    pub stages: Vec<RawStage>,
}

/// One entry of `stages:`.
#[derive(Debug)]
pub struct RawStage {
    /// Stage id.
    pub id: String,
    /// Where the stage entry starts.
    pub pos: Pos,
    /// Where its id is.
    pub id_pos: Pos,
    /// Kind name.
    pub kind: String,
    /// Where the kind is.
    pub kind_pos: Pos,
    /// Its upstream references.
    pub inputs: Vec<RawInput>,
    /// Its params mapping with vars substituted (an empty mapping when absent).
    pub params: Node,
    /// What it asks the executor for (the pipeline's defaults are applied later).
    pub resources: Resources,
}

/// One upstream reference: `stage` or `stage.output`, possibly bound to a named slot.
#[derive(Clone, Debug)]
pub struct RawInput {
    /// The slot for the map form of `inputs:`; `None` in the list form.
    pub slot: Option<(String, Pos)>,
    /// The reference text.
    pub reference: String,
    /// Where the reference is.
    pub pos: Pos,
}

/// Reads the top level of a manifest, collecting problems into `diags`.
pub fn read(
    root: &Node,
    file: &str,
    overrides: &BTreeMap<String, Node>,
    diags: &mut Diagnostics,
) -> RawManifest {
    let mut m = RawManifest {
        name: String::new(),
        store: None,
        store_pos: None,
        seed: 0,
        executor: Executor::default(),
        resources: Resources::default(),
        vars: Vars::default(),
        stages: Vec::new(),
    };
    let Some(entries) = root.as_map() else {
        diags.push(
            file,
            root.pos,
            format!(
                "a manifest is a mapping with keys {}, found {}",
                TOP_KEYS.join(", "),
                root.type_name()
            ),
        );
        return m;
    };
    check_keys(entries, TOP_KEYS, file, "", diags);
    match root.get("name") {
        Some(n) => match n.as_str() {
            Some(s) if !s.trim().is_empty() => m.name = s.to_string(),
            _ => diags.push(file, n.pos, "\"name\" must be a non-empty string"),
        },
        None => diags.push(
            file,
            Pos { line: 1, col: 1 },
            "missing key \"name\": give the pipeline a name",
        ),
    }
    if let Some(n) = root.get("seed") {
        match n.value {
            NodeValue::Int(i) if i >= 0 => m.seed = i as u64,
            _ => diags.push(
                file,
                n.pos,
                format!("\"seed\" must be a non-negative integer, found {}", n.type_name()),
            ),
        }
    }
    m.vars = Vars::read(root.get("vars"), overrides, file, diags);
    if let Some(n) = root.get("store") {
        let n = m.vars.substitute(n, file, diags);
        match n.as_str() {
            Some(s) if !s.is_empty() => (m.store, m.store_pos) = (Some(s.to_string()), Some(n.pos)),
            _ => diags.push(file, n.pos, "\"store\" must be a directory path"),
        }
    }
    if let Some(n) = root.get("executor") {
        m.executor = read_executor(&m.vars.substitute(n, file, diags), file, diags);
    }
    if let Some(n) = root.get("resources") {
        m.resources = Resources::read(&m.vars.substitute(n, file, diags), file, "", diags);
    }
    match root.get("stages").map(|n| (n, &n.value)) {
        Some((_, NodeValue::Seq(items))) => {
            for item in items {
                if let Some(stage) = read_stage(item, file, &m.vars, diags) {
                    m.stages.push(stage);
                }
            }
        }
        Some((n, _)) => {
            diags.push(file, n.pos, format!("\"stages\" must be a list, found {}", n.type_name()))
        }
        None => diags.push(
            file,
            Pos { line: 1, col: 1 },
            "missing key \"stages\": list the pipeline's stages",
        ),
    }
    m
}

fn read_stage(item: &Node, file: &str, vars: &Vars, diags: &mut Diagnostics) -> Option<RawStage> {
    let Some(entries) = item.as_map() else {
        diags.push(
            file,
            item.pos,
            format!(
                "a stage is a mapping with keys id, kind, inputs, params, resources; found {}",
                item.type_name()
            ),
        );
        return None;
    };
    let id = item.get("id");
    let label = id.and_then(Node::as_str).map(|s| format!("stage \"{s}\": ")).unwrap_or_default();
    check_keys(entries, STAGE_KEYS, file, &label, diags);
    let (id, id_pos) = match id {
        Some(n) => match n.as_str() {
            Some(s) if valid_id(s) => (s.to_string(), n.pos),
            Some(s) => {
                diags.push(file, n.pos, format!("stage id \"{s}\" must be letters, digits, '_' or '-', starting with a letter"));
                (s.to_string(), n.pos)
            }
            None => {
                diags.push(
                    file,
                    n.pos,
                    format!("stage \"id\" must be a string, found {}", n.type_name()),
                );
                return None;
            }
        },
        None => {
            diags.push(file, item.pos, "stage without \"id\": give every stage a unique id");
            return None;
        }
    };
    let (kind, kind_pos) = match item.get("kind") {
        Some(n) => match n.as_str() {
            Some(s) if !s.trim().is_empty() => (s.to_string(), n.pos),
            Some(_) => {
                diags.push(
                    file,
                    n.pos,
                    format!("{label}\"kind\" is empty (see `medalign stages` for the kinds)"),
                );
                (String::new(), n.pos)
            }
            None => {
                diags.push(
                    file,
                    n.pos,
                    format!("{label}\"kind\" must be a string, found {}", n.type_name()),
                );
                (String::new(), n.pos)
            }
        },
        None => {
            diags.push(
                file,
                item.pos,
                format!("{label}missing key \"kind\" (see `medalign stages` for the kinds)"),
            );
            (String::new(), item.pos)
        }
    };
    let inputs =
        item.get("inputs").map(|n| read_inputs(n, file, &label, diags)).unwrap_or_default();
    let params = match item.get("params") {
        None => Node { pos: item.pos, value: NodeValue::Map(Vec::new()) },
        Some(n) if n.value == NodeValue::Null => {
            Node { pos: n.pos, value: NodeValue::Map(Vec::new()) }
        }
        Some(n) => vars.substitute(n, file, diags),
    };
    let resources = match item.get("resources") {
        Some(n) => Resources::read(&vars.substitute(n, file, diags), file, &label, diags),
        None => Resources::default(),
    };
    Some(RawStage { id, pos: item.pos, id_pos, kind, kind_pos, inputs, params, resources })
}

/// `executor: local` or `executor: slurm`.
fn read_executor(n: &Node, file: &str, diags: &mut Diagnostics) -> Executor {
    let name = n.as_str().unwrap_or_default();
    if let Some(e) = Executor::from_name(name) {
        return e;
    }
    let hint = did_you_mean(name, Executor::NAMES.iter().copied())
        .map(|b| format!(" (did you mean \"{b}\"?)"))
        .unwrap_or_else(|| format!(" (one of: {})", Executor::NAMES.join(", ")));
    let what = n.as_str().map(|s| format!("\"{s}\"")).unwrap_or_else(|| n.type_name().into());
    diags.push(file, n.pos, format!("unknown executor {what}{hint}"));
    Executor::default()
}

fn read_inputs(node: &Node, file: &str, label: &str, diags: &mut Diagnostics) -> Vec<RawInput> {
    let mut out = Vec::new();
    let mut refs = |n: &Node, slot: Option<(String, Pos)>, diags: &mut Diagnostics| match &n.value {
        NodeValue::Str(s) => {
            out.push(RawInput { slot: slot.clone(), reference: s.clone(), pos: n.pos })
        }
        NodeValue::Seq(items) => {
            for i in items {
                match i.as_str() {
                    Some(s) => out.push(RawInput {
                        slot: slot.clone(),
                        reference: s.to_string(),
                        pos: i.pos,
                    }),
                    None => diags.push(
                        file,
                        i.pos,
                        format!(
                            "{label}an input is a stage id or \"stage.output\", found {}",
                            i.type_name()
                        ),
                    ),
                }
            }
        }
        _ => diags.push(
            file,
            n.pos,
            format!("{label}an input is a stage id or \"stage.output\", found {}", n.type_name()),
        ),
    };
    match &node.value {
        NodeValue::Map(entries) => {
            for (k, v) in entries {
                let slot = k.as_str().unwrap_or_default().to_string();
                refs(v, Some((slot, k.pos)), diags);
            }
        }
        NodeValue::Null => {}
        _ => refs(node, None, diags),
    }
    out
}

fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn check_keys(
    entries: &[(Node, Node)],
    allowed: &[&str],
    file: &str,
    label: &str,
    diags: &mut Diagnostics,
) {
    let candidates: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    for (k, _) in entries {
        let key = k.as_str().unwrap_or_default();
        if !allowed.contains(&key) {
            diags.push(file, k.pos, format!("{label}{}", unknown_key_message(key, &candidates)));
        }
    }
}
