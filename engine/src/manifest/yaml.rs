//! A YAML tree that remembers where each node came from, so every error can say `file:line:column`.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

/// A position in the manifest, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub col: usize,
}

/// A YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub pos: Pos,
    /// What it holds.
    pub value: NodeValue,
}

/// The value of a [`Node`].
#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float, kept as written for messages.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in document order; keys are strings (others are rejected when parsing).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The string of a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The entries of a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }
    /// A word for the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }
    /// The node at a params path such as `sources[1].path`, as segments; with the position of the key
    /// when the last segment names a mapping key (so unknown keys point at themselves).
    pub fn locate(&self, segs: &[String]) -> Option<Pos> {
        let Some((first, rest)) = segs.split_first() else {
            return Some(self.pos);
        };
        match &self.value {
            NodeValue::Seq(items) => {
                let idx: usize = first.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
                let item = items.get(idx)?;
                Some(item.locate(rest).unwrap_or(item.pos))
            }
            NodeValue::Map(entries) => {
                let (k, v) = entries.iter().find(|(k, _)| k.as_str() == Some(first.as_str()))?;
                if rest.is_empty() {
                    Some(k.pos)
                } else {
                    Some(v.locate(rest).unwrap_or(v.pos))
                }
            }
            _ => None,
        }
    }
    /// The deepest position along `segs` that exists (the mapping that lacks a key, say).
    pub fn nearest(&self, segs: &[String]) -> Pos {
        (0..=segs.len()).rev().find_map(|n| self.locate(&segs[..n])).unwrap_or(self.pos)
    }
    /// Converts to a `serde_yaml::Value` for typed deserialization.
    pub fn to_serde(&self) -> serde_yaml::Value {
        use serde_yaml::Value as V;
        match &self.value {
            NodeValue::Null => V::Null,
            NodeValue::Bool(b) => V::Bool(*b),
            NodeValue::Int(i) => V::Number((*i).into()),
            NodeValue::Float(f) => V::Number((*f).into()),
            NodeValue::Str(s) => V::String(s.clone()),
            NodeValue::Seq(items) => V::Sequence(items.iter().map(Node::to_serde).collect()),
            NodeValue::Map(entries) => {
                V::Mapping(entries.iter().map(|(k, v)| (k.to_serde(), v.to_serde())).collect())
            }
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Clone, Debug)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// What.
    pub message: String,
}

/// At most this many nodes come from aliases in one document: real manifests use a handful,
/// while a few hundred bytes of nested anchors can otherwise expand to billions (a "billion laughs").
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Parses one YAML document (a leading byte-order mark is skipped). Duplicate keys, non-string keys,
/// a second document and aliases that expand past [`MAX_ALIAS_NODES`] nodes are errors (the parser
/// itself bounds nesting).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let loaded = parser.load(&mut builder, true);
    // The builder's own error comes first: it stops at the first problem, which may precede a
    // syntax error further on.
    if let Some(err) = builder.error {
        return Err(err);
    }
    loaded.map_err(|e| SyntaxError { pos: pos_of(e.marker()), message: e.info().to_string() })?;
    Ok(builder.root.unwrap_or(Node { pos: Pos { line: 1, col: 1 }, value: NodeValue::Null }))
}

/// The number of nodes in `node`, itself included.
fn size(node: &Node) -> usize {
    match &node.value {
        NodeValue::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        NodeValue::Map(entries) => {
            1 + entries.iter().map(|(k, v)| size(k) + size(v)).sum::<usize>()
        }
        _ => 1,
    }
}

fn pos_of(m: &Marker) -> Pos {
    Pos { line: m.line(), col: m.col() + 1 }
}

enum Open {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    /// Anchored nodes with their sizes.
    anchors: Vec<(usize, Node, usize)>,
    /// Nodes copied in by aliases so far.
    alias_nodes: usize,
    documents: usize,
    root: Option<Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let n = size(&node);
            self.anchors.push((anchor, node.clone(), n));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(_, _, items)) => items.push(node),
            Some(Open::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    if node.as_str().is_none() {
                        self.fail(
                            node.pos,
                            format!("mapping keys must be strings, found {}", node.type_name()),
                        );
                    } else if entries.iter().any(|(k, _)| k.value == node.value) {
                        let key = node.as_str().unwrap_or_default().to_string();
                        self.fail(node.pos, format!("duplicate key \"{key}\": remove one of them"));
                    } else {
                        *pending = Some(node);
                    }
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { pos, message });
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_of(&mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(pos, "a second YAML document: a manifest is one document; remove the `---` and what follows, or merge it into the first".into());
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    match Yaml::from_str(&text) {
                        Yaml::Null => NodeValue::Null,
                        Yaml::Boolean(b) => NodeValue::Bool(b),
                        Yaml::Integer(i) => NodeValue::Int(i),
                        Yaml::Real(r) => {
                            r.parse().map(NodeValue::Float).unwrap_or(NodeValue::Str(text))
                        }
                        _ => NodeValue::Str(text),
                    }
                } else {
                    NodeValue::Str(text)
                };
                self.push(Node { pos, value }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(pos, anchor, Vec::new(), None))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node_and_anchor = match self.stack.pop() {
                    Some(Open::Seq(p, a, items)) => {
                        (Node { pos: p, value: NodeValue::Seq(items) }, a)
                    }
                    Some(Open::Map(p, a, entries, _)) => {
                        (Node { pos: p, value: NodeValue::Map(entries) }, a)
                    }
                    None => return,
                };
                self.push(node_and_anchor.0, node_and_anchor.1);
            }
            Event::Alias(id) => match self.anchors.iter().rev().find(|(a, _, _)| *a == id) {
                Some((_, _, n)) if self.alias_nodes + n > MAX_ALIAS_NODES => {
                    let message = format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes (this one adds {n}): \
                         nested anchors multiply; write the values out or use fewer aliases"
                    );
                    self.fail(pos, message);
                }
                Some((_, node, n)) => {
                    self.alias_nodes += *n;
                    let node = Node { pos, value: node.value.clone() };
                    self.push(node, 0);
                }
                None => self.fail(pos, "alias to an unknown anchor".into()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  - x\n  - {c: 2.5}\n").unwrap();
        let b = n.get("b").unwrap();
        assert_eq!(n.get("a").unwrap().pos, Pos { line: 1, col: 4 });
        assert_eq!(n.locate(&["b".into()]), Some(Pos { line: 2, col: 1 }));
        let segs: Vec<String> = vec!["b".into(), "[1]".into(), "c".into()];
        assert_eq!(n.locate(&segs), Some(Pos { line: 4, col: 6 }));
        assert!(matches!(b.value, NodeValue::Seq(_)));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(
            (e.pos.line, e.message.as_str()),
            (2, "duplicate key \"a\": remove one of them")
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let n = parse("\u{feff}name: x\n").unwrap();
        assert_eq!(n.get("name").unwrap().value, NodeValue::Str("x".into()));
        assert_eq!(n.get("name").unwrap().pos, Pos { line: 1, col: 7 });
    }

    #[test]
    fn a_second_document_is_an_error() {
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 2);
        assert!(e.message.starts_with("a second YAML document"), "{}", e.message);
        assert!(parse("---\na: 1\n").is_ok(), "one document may start with ---");
        assert!(parse("a: 1\n...\n").is_ok(), "and end with ...");
    }

    #[test]
    fn an_alias_bomb_is_stopped_at_the_alias_that_crosses_the_bound() {
        // Nine levels of ten aliases each: 10^9 leaves if expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev.as_str(); 10].join(", ")));
        }
        assert!(text.len() < 600, "{} bytes", text.len());
        let e = parse(&text).unwrap_err();
        assert!(e.message.starts_with("aliases expand to more than 100000 nodes"), "{}", e.message);
        assert_eq!(e.pos.line, 5, "{e:?}");
        // A modest use of aliases still works.
        let n = parse("base: &b {lr: 1, steps: 2}\nsft: *b\ndpo: *b\n").unwrap();
        assert_eq!(n.get("dpo").unwrap().get("steps").unwrap().value, NodeValue::Int(2));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let text = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse(&text).unwrap_err();
        assert_eq!((e.pos.line, e.message.as_str()), (1, "recursion limit exceeded"));
    }

    #[test]
    fn quoted_scalars_stay_strings() {
        let n = parse("a: '1'\nb: 1\nc: 1e-4\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, NodeValue::Str("1".into()));
        assert_eq!(n.get("b").unwrap().value, NodeValue::Int(1));
        assert_eq!(n.get("c").unwrap().value, NodeValue::Float(1e-4));
    }
}
