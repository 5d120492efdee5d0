//! Compiling a manifest into a `Plan`: kinds resolved, params typed, references bound to slots,
//! edge contracts checked, cycles named, stages in dependency order. All errors are collected.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::Diagnostics;
use crate::error::{EngineError, IoContext, Result};
use crate::executor::Executor;
use crate::kind::{Arity, CheckContext, DynKind, InputSlot, KindRegistry, OutputSlot, Stage};
use crate::manifest::raw::{self, RawInput, RawStage};
use crate::manifest::yaml::{self, Node, Pos};
use crate::params::{did_you_mean, split_path};
use crate::resources::Resources;

/// A validated pipeline, stages in dependency order.
pub struct Plan {
    /// Pipeline name.
    pub name: String,
    /// The manifest path as the user gave it.
    pub manifest: String,
    /// Where relative paths in params start.
    pub check: CheckContext,
    /// The artifact store directory.
    pub store_dir: PathBuf,
    /// Pipeline seed.
    pub seed: u64,
    /// Where stages run unless the command line says otherwise.
    pub executor: Executor,
    /// Stages, upstream before downstream.
    pub stages: Vec<PlannedStage>,
}

/// One stage of a plan.
pub struct PlannedStage {
    /// Stage id.
    pub id: String,
    /// Kind name.
    pub kind: &'static str,
    /// Kind implementation version.
    pub version: u32,
    /// Its outputs.
    pub outputs: &'static [OutputSlot],
    /// The typed stage.
    pub stage: Box<dyn Stage>,
    /// Its inputs bound to slots.
    pub inputs: Vec<Binding>,
    /// What it asks the executor for, the pipeline's defaults applied (not part of its key).
    pub resources: Resources,
    /// Position in the manifest.
    pub pos: Pos,
}

/// An upstream output bound to an input slot.
#[derive(Clone, Debug)]
pub struct Binding {
    /// The slot.
    pub slot: &'static str,
    /// Index of the upstream stage in [`Plan::stages`].
    pub stage: usize,
    /// The upstream output name.
    pub output: &'static str,
    /// Its artifact kind.
    pub kind: &'static str,
}

impl Plan {
    /// Index of a stage by id.
    pub fn index(&self, id: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.id == id)
    }
    /// Index of a stage by id, or an error that lists the ids.
    pub fn require(&self, id: &str) -> Result<usize> {
        self.index(id).ok_or_else(|| {
            let ids: Vec<&str> = self.stages.iter().map(|s| s.id.as_str()).collect();
            let hint = did_you_mean(id, ids.iter().copied())
                .map(|b| format!(" (did you mean \"{b}\"?)"))
                .unwrap_or_default();
            EngineError::Usage(format!(
                "no stage \"{id}\" in {}{hint}; stages: {}",
                self.manifest,
                ids.join(", ")
            ))
        })
    }
    /// Distinct upstream stage indices of a stage.
    pub fn upstream(&self, i: usize) -> Vec<usize> {
        let mut up: Vec<usize> = self.stages[i].inputs.iter().map(|b| b.stage).collect();
        up.sort_unstable();
        up.dedup();
        up
    }
    /// The stage and everything upstream of it.
    pub fn ancestors_and_self(&self, i: usize) -> Vec<bool> {
        let mut keep = vec![false; self.stages.len()];
        let mut todo = vec![i];
        while let Some(j) = todo.pop() {
            if !keep[j] {
                keep[j] = true;
                todo.extend(self.upstream(j));
            }
        }
        keep
    }
}

/// Reads, parses and compiles a manifest file; `vars` override the manifest's `vars:`.
pub fn load(path: &Path, registry: &KindRegistry, vars: &BTreeMap<String, String>) -> Result<Plan> {
    let bytes = std::fs::read(path).at(path)?;
    let file = path.display().to_string();
    let text = String::from_utf8(bytes)
        .map_err(|e| not_utf8(&file, e.as_bytes(), e.utf8_error().valid_up_to()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).at(dir)?;
    compile(&text, &file, &dir, registry, vars)
}

/// The diagnostic for a manifest that is not UTF-8, at the first bad byte.
fn not_utf8(file: &str, bytes: &[u8], valid_up_to: usize) -> EngineError {
    let before = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let mut d = Diagnostics::default();
    d.push(
        file,
        Pos { line, col },
        format!("not UTF-8 (byte 0x{:02x}): save the manifest as UTF-8", bytes[valid_up_to]),
    );
    EngineError::Manifest(d)
}

/// Compiles manifest text; `file` is how errors name it, `manifest_dir` anchors relative paths.
pub fn compile(
    text: &str,
    file: &str,
    manifest_dir: &Path,
    registry: &KindRegistry,
    vars: &BTreeMap<String, String>,
) -> Result<Plan> {
    let mut diags = Diagnostics::default();
    let root = yaml::parse(text).map_err(|e| {
        let mut d = Diagnostics::default();
        d.push(file, e.pos, format!("YAML syntax: {}", e.message));
        EngineError::Manifest(d)
    })?;
    let overrides: BTreeMap<String, Node> = vars
        .iter()
        .map(|(k, v)| {
            let node = yaml::parse(v)
                .unwrap_or(Node { pos: Pos::default(), value: yaml::NodeValue::Str(v.clone()) });
            (k.clone(), node)
        })
        .collect();
    let raw = raw::read(&root, file, &overrides, &mut diags);
    let store_dir = manifest_dir.join(raw.store.as_deref().unwrap_or(".medalign"));
    let check =
        CheckContext { manifest_dir: manifest_dir.to_path_buf(), store_dir: store_dir.clone() };
    // Semantic checks (files exist, ranges) only once the manifest itself reads cleanly: an unknown
    // var would otherwise also show up as a missing file.
    let semantic = diags.is_empty();
    if semantic {
        if let Err(why) = crate::store::check_usable(&store_dir) {
            let (pos, what) = match raw.store_pos {
                Some(pos) => (pos, "\"store\""),
                None => (
                    Pos { line: 1, col: 1 },
                    "the default store (set `store:` to put it elsewhere)",
                ),
            };
            diags.push(file, pos, format!("{what} {}: {why}", store_dir.display()));
        }
    }
    let stages =
        compile_stages(&raw.stages, &raw.resources, registry, &check, semantic, file, &mut diags);
    let order =
        if diags.is_empty() { order_stages(&stages, &raw.stages, file, &mut diags) } else { None };
    diags.sort();
    match order {
        Some(order) if diags.is_empty() => Ok(Plan {
            name: raw.name,
            manifest: file.to_string(),
            check,
            store_dir,
            seed: raw.seed,
            executor: raw.executor,
            stages: reorder(stages, &order),
        }),
        _ => Err(EngineError::Manifest(diags)),
    }
}

struct Compiled {
    id: String,
    kind: &'static str,
    version: u32,
    outputs: &'static [OutputSlot],
    stage: Box<dyn Stage>,
    inputs: Vec<(Binding, Pos)>,
    resources: Resources,
    pos: Pos,
}

fn compile_stages(
    raws: &[RawStage],
    defaults: &Resources,
    registry: &KindRegistry,
    check: &CheckContext,
    semantic: bool,
    file: &str,
    diags: &mut Diagnostics,
) -> Vec<Option<Compiled>> {
    let mut first_seen: HashMap<&str, Pos> = HashMap::new();
    for s in raws {
        if let Some(prev) = first_seen.get(s.id.as_str()) {
            diags.push(
                file,
                s.id_pos,
                format!(
                    "duplicate stage id \"{}\" (first defined at line {}): ids must be unique",
                    s.id, prev.line
                ),
            );
        } else {
            first_seen.insert(&s.id, s.id_pos);
        }
    }
    let kinds: HashMap<&str, Option<&dyn DynKind>> =
        raws.iter().map(|s| (s.id.as_str(), registry.kind(&s.kind))).collect();
    raws.iter()
        .map(|s| {
            let label = format!("stage \"{}\"", s.id);
            let Some(kind) = registry.kind(&s.kind) else {
                if !s.kind.is_empty() {
                    let hint = did_you_mean(&s.kind, registry.kinds().map(|k| k.name()))
                        .map(|b| format!(" (did you mean \"{b}\"?)"))
                        .unwrap_or_else(|| {
                            format!(
                                " (kinds: {})",
                                registry.kinds().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                            )
                        });
                    diags.push(
                        file,
                        s.kind_pos,
                        format!("{label}: unknown kind \"{}\"{hint}", s.kind),
                    );
                }
                return None;
            };
            let inputs = bind_inputs(s, kind, &kinds, raws, file, &label, diags);
            let stage = match kind.build(&s.params.to_serde()) {
                Ok(stage) => stage,
                Err(errors) => {
                    for e in errors {
                        let segs = split_path(&e.path);
                        let at = if e.path.is_empty() {
                            String::new()
                        } else {
                            format!("params.{}: ", e.path)
                        };
                        let message = if e.message.starts_with("unknown key") {
                            e.message.clone()
                        } else {
                            format!("{at}{}", e.message)
                        };
                        diags.push(file, s.params.nearest(&segs), format!("{label}: {message}"));
                    }
                    return None;
                }
            };
            for e in if semantic { stage.check(check) } else { Vec::new() } {
                let segs = split_path(&e.path);
                diags.push(
                    file,
                    s.params.nearest(&segs),
                    format!("{label}: params.{}: {}", e.path, e.message),
                );
            }
            Some(Compiled {
                id: s.id.clone(),
                kind: kind.name(),
                version: kind.version(),
                outputs: kind.outputs(),
                stage,
                inputs,
                resources: s.resources.clone().or(defaults),
                pos: s.pos,
            })
        })
        .collect()
}

fn bind_inputs(
    s: &RawStage,
    kind: &dyn DynKind,
    kinds: &HashMap<&str, Option<&dyn DynKind>>,
    raws: &[RawStage],
    file: &str,
    label: &str,
    diags: &mut Diagnostics,
) -> Vec<(Binding, Pos)> {
    let slots = kind.inputs();
    let mut bound: Vec<(Binding, Pos)> = Vec::new();
    let mut broken = false;
    for input in &s.inputs {
        let Some((up_index, output)) = resolve_reference(input, kinds, raws, file, label, diags)
        else {
            broken = true;
            continue;
        };
        let slot = match &input.slot {
            Some((name, pos)) => {
                match slots.iter().find(|sl| sl.name == name) {
                    Some(slot) => Some(slot),
                    None => {
                        let hint = did_you_mean(name, slots.iter().map(|sl| sl.name))
                            .map(|b| format!(" (did you mean \"{b}\"?)"))
                            .unwrap_or_default();
                        let names: Vec<&str> = slots.iter().map(|sl| sl.name).collect();
                        diags.push(file, *pos, format!("{label}: kind \"{}\" has no input slot \"{name}\"{hint}; slots: {}", kind.name(), names.join(", ")));
                        broken = true;
                        continue;
                    }
                }
            }
            None => slots.iter().find(|sl| sl.kinds.contains(&output.kind) && has_room(sl, &bound)),
        };
        match slot {
            Some(slot) if slot.kinds.contains(&output.kind) => bound.push((
                Binding {
                    slot: slot.name,
                    stage: up_index,
                    output: output.name,
                    kind: output.kind,
                },
                input.pos,
            )),
            _ => {
                broken = true;
                let takes: Vec<String> = slots
                    .iter()
                    .map(|sl| format!("{} ({})", sl.name, sl.kinds.join("|")))
                    .collect();
                let target = match slot {
                    Some(sl) => format!("slot \"{}\" takes {}", sl.name, sl.kinds.join(" or ")),
                    None if takes.is_empty() => format!("kind \"{}\" takes no inputs", kind.name()),
                    None if slots.iter().any(|sl| sl.kinds.contains(&output.kind)) => {
                        format!(
                            "kind \"{}\" has no free slot left for it (slots: {})",
                            kind.name(),
                            takes.join(", ")
                        )
                    }
                    None => format!(
                        "no input slot of kind \"{}\" takes that (slots: {})",
                        kind.name(),
                        takes.join(", ")
                    ),
                };
                diags.push(
                    file,
                    input.pos,
                    format!(
                        "{label}: input \"{}\" is an artifact of kind \"{}\", but {target}",
                        input.reference, output.kind
                    ),
                );
            }
        }
    }
    // A reference that failed above would have filled a slot: do not also report the slot as empty.
    for slot in slots.iter().filter(|_| !broken) {
        let n = bound.iter().filter(|(b, _)| b.slot == slot.name).count();
        let problem = match slot.arity {
            Arity::One if n != 1 => Some("exactly one"),
            Arity::Optional if n > 1 => Some("at most one"),
            Arity::AtLeastOne if n == 0 => Some("at least one"),
            _ => None,
        };
        if let Some(problem) = problem {
            let pos =
                bound.iter().find(|(b, _)| b.slot == slot.name).map(|(_, p)| *p).unwrap_or(s.pos);
            diags.push(file, pos, format!(
                "{label}: input slot \"{}\" takes {problem} artifact of kind {}, got {n}: add it under inputs:",
                slot.name,
                slot.kinds.join(" or ")
            ));
        }
    }
    bound
}

fn has_room(slot: &InputSlot, bound: &[(Binding, Pos)]) -> bool {
    let n = bound.iter().filter(|(b, _)| b.slot == slot.name).count();
    matches!(slot.arity, Arity::Many | Arity::AtLeastOne) || n == 0
}

fn resolve_reference(
    input: &RawInput,
    kinds: &HashMap<&str, Option<&dyn DynKind>>,
    raws: &[RawStage],
    file: &str,
    label: &str,
    diags: &mut Diagnostics,
) -> Option<(usize, &'static OutputSlot)> {
    let (id, output) = match input.reference.split_once('.') {
        Some((id, out)) => (id, Some(out)),
        None => (input.reference.as_str(), None),
    };
    let Some(up_index) = raws.iter().position(|r| r.id == id) else {
        let hint = did_you_mean(id, raws.iter().map(|r| r.id.as_str()))
            .map(|b| format!(" (did you mean \"{b}\"?)"))
            .unwrap_or_default();
        diags.push(file, input.pos, format!("{label}: unknown input stage \"{id}\"{hint}"));
        return None;
    };
    let up_kind = (*kinds.get(id)?)?;
    let outputs = up_kind.outputs();
    match output {
        None => match outputs.first() {
            Some(o) => Some((up_index, o)),
            None => {
                diags.push(
                    file,
                    input.pos,
                    format!("{label}: stage \"{id}\" ({}) has no outputs to take", up_kind.name()),
                );
                None
            }
        },
        Some(name) => match outputs.iter().find(|o| o.name == name) {
            Some(o) => Some((up_index, o)),
            None => {
                let names: Vec<&str> = outputs.iter().map(|o| o.name).collect();
                let hint = did_you_mean(name, names.iter().copied())
                    .map(|b| format!(" (did you mean \"{b}\"?)"))
                    .unwrap_or_default();
                diags.push(
                    file,
                    input.pos,
                    format!(
                        "{label}: stage \"{id}\" has no output \"{name}\"{hint}; outputs: {}",
                        names.join(", ")
                    ),
                );
                None
            }
        },
    }
}

/// Dependency order (document order among independent stages), or `None` after reporting cycles.
fn order_stages(
    stages: &[Option<Compiled>],
    raws: &[RawStage],
    file: &str,
    diags: &mut Diagnostics,
) -> Option<Vec<usize>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| graph.add_node(i)).collect();
    for (i, s) in stages.iter().enumerate() {
        for (b, _) in s.as_ref().map(|s| s.inputs.as_slice()).unwrap_or_default() {
            graph.update_edge(nodes[b.stage], nodes[i], ());
        }
    }
    let mut cyclic = false;
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() > 1 || self_loop {
            cyclic = true;
            let start = *scc.iter().min_by_key(|n| graph[**n]).expect("non-empty scc");
            let path = cycle_path(&graph, start, &scc);
            let names: Vec<&str> = path.iter().map(|n| raws[graph[*n]].id.as_str()).collect();
            diags.push(file, raws[graph[start]].pos, format!(
                "stage \"{}\": dependency cycle {}: a stage cannot consume its own output; remove one of these inputs",
                names[0],
                names.join(" -> ")
            ));
        }
    }
    if cyclic {
        return None;
    }
    let mut indegree: Vec<usize> =
        nodes.iter().map(|n| graph.neighbors_directed(*n, petgraph::Incoming).count()).collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|i| indegree[*i] == 0).collect();
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for n in graph.neighbors(nodes[i]) {
            let j = graph[n];
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    Some(order)
}

/// A path start -> ... -> start inside one strongly connected component.
fn cycle_path(graph: &DiGraph<usize, ()>, start: NodeIndex, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| scc.contains(m)).collect();
        next.sort_by_key(|m| graph[*m]);
        for m in next {
            if m == start {
                let mut path = vec![start];
                let mut cur = n;
                while cur != start {
                    path.push(cur);
                    cur = prev[&cur];
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = prev.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    vec![start, start]
}

fn reorder(stages: Vec<Option<Compiled>>, order: &[usize]) -> Vec<PlannedStage> {
    let mut new_index = vec![0; order.len()];
    for (new, old) in order.iter().enumerate() {
        new_index[*old] = new;
    }
    let mut slots: Vec<Option<Compiled>> = stages;
    order
        .iter()
        .map(|old| {
            let c = slots[*old].take().expect("compiled stage");
            PlannedStage {
                id: c.id,
                kind: c.kind,
                version: c.version,
                outputs: c.outputs,
                stage: c.stage,
                inputs: c
                    .inputs
                    .into_iter()
                    .map(|(b, _)| Binding { stage: new_index[b.stage], ..b })
                    .collect(),
                resources: c.resources,
                pos: c.pos,
            }
        })
        .collect()
}
