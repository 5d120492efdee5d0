//! `vars:` and their use in params as `${name}`: a whole-value reference keeps the var's type,
//! a reference inside a longer string is spliced in as text; vars may use other vars.
//! `--var name=value` overrides.

use std::collections::BTreeMap;

use super::yaml::{Node, NodeValue};
use crate::diagnostic::Diagnostics;
use crate::params::did_you_mean;

/// The pipeline's vars, after command-line overrides.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    values: BTreeMap<String, Node>,
}

impl Vars {
    /// Reads `vars:` (a mapping of scalars or lists), applies `overrides`, and expands the `${name}`
    /// references inside values; a var that refers back to itself is reported with its path.
    pub fn read(
        node: Option<&Node>,
        overrides: &BTreeMap<String, Node>,
        file: &str,
        diags: &mut Diagnostics,
    ) -> Vars {
        let mut raw = BTreeMap::new();
        if let Some(node) = node {
            match node.as_map() {
                Some(entries) => {
                    for (k, v) in entries {
                        raw.insert(k.as_str().unwrap_or_default().to_string(), v.clone());
                    }
                }
                None if node.value == NodeValue::Null => {}
                None => diags.push(
                    file,
                    node.pos,
                    format!(
                        "\"vars\" must be a mapping of names to values, found {}",
                        node.type_name()
                    ),
                ),
            }
        }
        for (k, v) in overrides {
            raw.insert(k.clone(), v.clone());
        }
        let mut expander = Expander { raw: &raw, done: BTreeMap::new(), visiting: Vec::new() };
        for name in raw.keys() {
            expander.expand(name, file, diags);
        }
        Vars { values: expander.done }
    }

    /// The value of a var.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.values.get(name)
    }

    /// `node` with every `${name}` replaced; unknown names are reported and left as written.
    pub fn substitute(&self, node: &Node, file: &str, diags: &mut Diagnostics) -> Node {
        substitute(node, file, diags, &mut |name, at, diags| {
            lookup(&self.values, name, at, file, diags).cloned()
        })
    }
}

/// Expands vars in dependency order, each once.
struct Expander<'a> {
    raw: &'a BTreeMap<String, Node>,
    done: BTreeMap<String, Node>,
    /// The vars being expanded, outermost first: a name met again here is a cycle.
    visiting: Vec<String>,
}

impl Expander<'_> {
    fn expand(&mut self, name: &str, file: &str, diags: &mut Diagnostics) -> Option<Node> {
        if let Some(v) = self.done.get(name) {
            return Some(v.clone());
        }
        let table = self.raw;
        let raw = table.get(name)?;
        self.visiting.push(name.to_string());
        let value = substitute(raw, file, diags, &mut |inner, at, diags| {
            if let Some(start) = self.visiting.iter().position(|v| v == inner) {
                let path: Vec<&str> =
                    self.visiting[start..].iter().map(String::as_str).chain([inner]).collect();
                diags.push(
                    file,
                    at.pos,
                    format!("var \"{inner}\" refers to itself: {}", path.join(" -> ")),
                );
                return None;
            }
            if !table.contains_key(inner) {
                return lookup(table, inner, at, file, diags).cloned();
            }
            self.expand(inner, file, diags)
        });
        self.visiting.pop();
        self.done.insert(name.to_string(), value.clone());
        Some(value)
    }
}

/// How `${name}` finds its value: `None` when it has none (the lookup reports why).
type Lookup<'a> = dyn FnMut(&str, &Node, &mut Diagnostics) -> Option<Node> + 'a;

fn substitute(node: &Node, file: &str, diags: &mut Diagnostics, lookup: &mut Lookup<'_>) -> Node {
    let value = match &node.value {
        NodeValue::Str(s) => return substitute_str(node, s, file, diags, lookup),
        NodeValue::Seq(items) => {
            NodeValue::Seq(items.iter().map(|n| substitute(n, file, diags, lookup)).collect())
        }
        NodeValue::Map(entries) => NodeValue::Map(
            entries.iter().map(|(k, v)| (k.clone(), substitute(v, file, diags, lookup))).collect(),
        ),
        other => other.clone(),
    };
    Node { pos: node.pos, value }
}

fn substitute_str(
    node: &Node,
    s: &str,
    file: &str,
    diags: &mut Diagnostics,
    lookup: &mut Lookup<'_>,
) -> Node {
    if !s.contains("${") {
        return node.clone();
    }
    if let Some(name) =
        s.strip_prefix("${").and_then(|r| r.strip_suffix('}')).filter(|n| !n.contains('}'))
    {
        return match lookup(name, node, diags) {
            Some(v) => Node { pos: node.pos, value: v.value },
            None => node.clone(),
        };
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            diags.push(file, node.pos, format!("unclosed \"${{\" in \"{s}\": write ${{name}}"));
            return node.clone();
        };
        let name = &rest[start + 2..start + len];
        match lookup(name, node, diags) {
            Some(v) => match &v.value {
                NodeValue::Str(t) => out.push_str(t),
                NodeValue::Int(i) => out.push_str(&i.to_string()),
                NodeValue::Float(f) => out.push_str(&f.to_string()),
                NodeValue::Bool(b) => out.push_str(&b.to_string()),
                _ => diags.push(
                    file,
                    node.pos,
                    format!(
                        "var \"{name}\" is {}, which cannot be spliced into a string",
                        v.type_name()
                    ),
                ),
            },
            None => return node.clone(),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Node { pos: node.pos, value: NodeValue::Str(out) }
}

fn lookup<'v>(
    values: &'v BTreeMap<String, Node>,
    name: &str,
    node: &Node,
    file: &str,
    diags: &mut Diagnostics,
) -> Option<&'v Node> {
    let found = values.get(name);
    if found.is_none() {
        let hint = match did_you_mean(name, values.keys().map(String::as_str)) {
            Some(best) => format!(" (did you mean \"{best}\"?)"),
            None => String::new(),
        };
        diags.push(
            file,
            node.pos,
            format!(
                "unknown var \"{name}\"{hint}: define it under vars: or pass --var {name}=VALUE"
            ),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    fn read(text: &str) -> (Vars, Vec<String>) {
        let root = parse(text).unwrap();
        let mut diags = Diagnostics::default();
        let vars = Vars::read(root.get("vars"), &BTreeMap::new(), "m.yaml", &mut diags);
        (vars, diags.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn a_var_may_use_other_vars_in_any_order() {
        let (vars, diags) = read("vars:\n  out: ${root}/${name}\n  root: ${base}/runs\n  base: /data\n  name: x\n  n: ${k}\n  k: 3\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(vars.get("out").unwrap().value, NodeValue::Str("/data/runs/x".into()));
        assert_eq!(
            vars.get("n").unwrap().value,
            NodeValue::Int(3),
            "a whole-value reference keeps its type"
        );
    }

    #[test]
    fn a_cycle_is_reported_at_the_reference_that_closes_it() {
        let (_, diags) = read("vars:\n  a: ${b}/x\n  b: ${c}\n  c: ${a}\n  d: ${d}\n");
        assert_eq!(
            diags,
            vec![
                "m.yaml:4:6: var \"a\" refers to itself: a -> b -> c -> a".to_string(),
                "m.yaml:5:6: var \"d\" refers to itself: d -> d".to_string(),
            ]
        );
    }

    #[test]
    fn an_unknown_var_inside_a_var_is_reported_there() {
        let (_, diags) = read("vars:\n  a: ${nope}/x\n");
        assert_eq!(
            diags,
            vec![
                "m.yaml:2:6: unknown var \"nope\": define it under vars: or pass --var nope=VALUE"
                    .to_string()
            ]
        );
    }
}
