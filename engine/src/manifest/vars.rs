//! `vars:` and their use in params as `${name}`: a whole-value reference keeps the var's type,
//! a reference inside a longer string is spliced in as text. `--var name=value` overrides.

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
    /// Reads `vars:` (a mapping of scalars or lists) and applies `overrides`.
    pub fn read(node: Option<&Node>, overrides: &BTreeMap<String, Node>, file: &str, diags: &mut Diagnostics) -> Vars {
        let mut values = BTreeMap::new();
        if let Some(node) = node {
            match node.as_map() {
                Some(entries) => {
                    for (k, v) in entries {
                        values.insert(k.as_str().unwrap_or_default().to_string(), v.clone());
                    }
                }
                None if node.value == NodeValue::Null => {}
                None => diags.push(file, node.pos, format!("\"vars\" must be a mapping of names to values, found {}", node.type_name())),
            }
        }
        for (k, v) in overrides {
            values.insert(k.clone(), v.clone());
        }
        Vars { values }
    }

    /// The value of a var.
    pub fn get(&self, name: &str) -> Option<&Node> {
        self.values.get(name)
    }

    /// `node` with every `${name}` replaced; unknown names are reported and left as written.
    pub fn substitute(&self, node: &Node, file: &str, diags: &mut Diagnostics) -> Node {
        let value = match &node.value {
            NodeValue::Str(s) => return self.substitute_str(node, s, file, diags),
            NodeValue::Seq(items) => NodeValue::Seq(items.iter().map(|n| self.substitute(n, file, diags)).collect()),
            NodeValue::Map(entries) => NodeValue::Map(
                entries.iter().map(|(k, v)| (k.clone(), self.substitute(v, file, diags))).collect(),
            ),
            other => other.clone(),
        };
        Node { pos: node.pos, value }
    }

    fn substitute_str(&self, node: &Node, s: &str, file: &str, diags: &mut Diagnostics) -> Node {
        if !s.contains("${") {
            return node.clone();
        }
        if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')).filter(|n| !n.contains('}')) {
            return match self.lookup(name, node, file, diags) {
                Some(v) => Node { pos: node.pos, value: v.value.clone() },
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
            match self.lookup(name, node, file, diags) {
                Some(v) => match &v.value {
                    NodeValue::Str(t) => out.push_str(t),
                    NodeValue::Int(i) => out.push_str(&i.to_string()),
                    NodeValue::Float(f) => out.push_str(&f.to_string()),
                    NodeValue::Bool(b) => out.push_str(&b.to_string()),
                    _ => diags.push(file, node.pos, format!("var \"{name}\" is {}, which cannot be spliced into a string", v.type_name())),
                },
                None => return node.clone(),
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Node { pos: node.pos, value: NodeValue::Str(out) }
    }

    fn lookup(&self, name: &str, node: &Node, file: &str, diags: &mut Diagnostics) -> Option<&Node> {
        let found = self.values.get(name);
        if found.is_none() {
            let hint = match did_you_mean(name, self.values.keys().map(String::as_str)) {
                Some(best) => format!(" (did you mean \"{best}\"?)"),
                None => String::new(),
            };
            diags.push(file, node.pos, format!("unknown var \"{name}\"{hint}: define it under vars: or pass --var {name}=VALUE"));
        }
        found
    }
}
