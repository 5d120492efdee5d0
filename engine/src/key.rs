//! Cache keys: BLAKE3 over a versioned, canonical encoding of everything that decides a stage's output.
//!
//! Ingredients, in this order: key format version, stage kind, kind implementation version, canonical
//! params, input artifacts (slot, upstream output kind and content hash), input files (param and
//! content hash: the path itself does not matter), declared environment facts, pipeline seed.
//! The encoding is our own tagged bytes (sorted maps, floats that are whole numbers encoded as
//! integers, -0 as 0), never `std::hash::Hash`, so keys are stable across builds and platforms.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// Bump when the encoding below changes: every key changes with it.
pub const KEY_FORMAT: &str = "medalign-cache-key/1";

/// Everything that decides a stage's output; recorded in manifest.json so `why` can diff it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ingredients {
    /// Stage kind.
    pub kind: String,
    /// Kind implementation version.
    pub version: u32,
    /// Resolved params.
    pub params: Json,
    /// Upstream artifacts, in slot order.
    pub inputs: Vec<InputIngredient>,
    /// Files read from outside the store.
    pub files: Vec<FileIngredient>,
    /// Environment facts the kind declares relevant.
    pub env: BTreeMap<String, String>,
    /// Pipeline seed.
    pub seed: u64,
}

/// An upstream artifact as a key ingredient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputIngredient {
    /// The input slot.
    pub slot: String,
    /// Upstream stage id (not hashed: renaming a stage keeps its consumers' keys).
    pub stage: String,
    /// Upstream output name (not hashed).
    pub output: String,
    /// The artifact kind.
    pub kind: String,
    /// The upstream artifact's key (not hashed: the content is what matters).
    pub key: String,
    /// Content hash of the upstream output.
    pub hash: String,
}

/// An input file as a key ingredient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIngredient {
    /// The param naming it.
    pub param: String,
    /// Absolute path (not hashed).
    pub path: String,
    /// Size in bytes (not hashed).
    pub bytes: u64,
    /// BLAKE3 of the content.
    pub hash: String,
}

impl Ingredients {
    /// The cache key: 64 hex digits.
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        let mut e = Encoder(&mut h);
        e.str(KEY_FORMAT);
        e.field(1);
        e.str(&self.kind);
        e.field(2);
        e.int(self.version as i128);
        e.field(3);
        e.value(&self.params);
        e.field(4);
        e.len(self.inputs.len());
        for i in &self.inputs {
            e.str(&i.slot);
            e.str(&i.kind);
            e.str(&i.hash);
        }
        e.field(5);
        e.len(self.files.len());
        for f in &self.files {
            e.str(&f.param);
            e.str(&f.hash);
        }
        e.field(6);
        e.len(self.env.len());
        for (k, v) in &self.env {
            e.str(k);
            e.str(v);
        }
        e.field(7);
        e.int(self.seed as i128);
        h.finalize().to_hex().to_string()
    }
}

struct Encoder<'a>(&'a mut blake3::Hasher);

impl Encoder<'_> {
    fn field(&mut self, n: u8) {
        self.0.update(&[b'#', n]);
    }
    fn len(&mut self, n: usize) {
        self.0.update(&(n as u64).to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.0.update(b"s");
        self.len(s.len());
        self.0.update(s.as_bytes());
    }
    fn int(&mut self, i: i128) {
        self.0.update(b"i");
        self.0.update(&i.to_le_bytes());
    }
    fn value(&mut self, v: &Json) {
        match v {
            Json::Null => {
                self.0.update(b"n");
            }
            Json::Bool(b) => {
                self.0.update(if *b { b"t" } else { b"f" });
            }
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    self.int(u as i128)
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
                        self.int(f as i128)
                    } else {
                        let f = if f == 0.0 { 0.0 } else { f };
                        self.0.update(b"d");
                        self.0.update(&f.to_bits().to_le_bytes());
                    }
                }
            }
            Json::String(s) => self.str(s),
            Json::Array(items) => {
                self.0.update(b"a");
                self.len(items.len());
                for i in items {
                    self.value(i);
                }
            }
            Json::Object(map) => {
                self.0.update(b"o");
                self.len(map.len());
                let mut entries: Vec<(&String, &Json)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    self.str(k);
                    self.value(v);
                }
            }
        }
    }
}

/// Canonical hash of a JSON value alone.
#[cfg(test)]
fn canonical_hash(v: &Json) -> String {
    let mut h = blake3::Hasher::new();
    Encoder(&mut h).value(v);
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Ingredients {
        Ingredients {
            kind: "train".into(),
            version: 3,
            params: json!({"lr": 1e-4, "epochs": 2, "targets": ["q", "v"]}),
            inputs: vec![InputIngredient {
                slot: "examples".into(),
                stage: "dedupe".into(),
                output: "examples".into(),
                kind: "examples".into(),
                key: "k".into(),
                hash: "abc".into(),
            }],
            files: vec![FileIngredient {
                param: "path".into(),
                path: "/a".into(),
                bytes: 3,
                hash: "f00".into(),
            }],
            env: BTreeMap::from([("model".to_string(), "m1".to_string())]),
            seed: 0,
        }
    }

    #[test]
    fn key_ignores_key_order_and_float_spelling() {
        let a = base();
        let mut b = base();
        b.params =
            serde_json::from_str(r#"{"targets": ["q","v"], "epochs": 2.0, "lr": 0.0001}"#).unwrap();
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn key_ignores_paths_and_upstream_names() {
        let a = base();
        let mut b = base();
        b.files[0].path = "/elsewhere/a".into();
        b.inputs[0].stage = "renamed".into();
        b.inputs[0].key = "other".into();
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn key_changes_with_each_ingredient() {
        let a = base().key();
        let edits: Vec<Box<dyn Fn(&mut Ingredients)>> = vec![
            Box::new(|i| i.kind = "eval".into()),
            Box::new(|i| i.version = 4),
            Box::new(|i| i.params["lr"] = json!(2e-4)),
            Box::new(|i| i.params["targets"] = json!(["v", "q"])),
            Box::new(|i| i.inputs[0].hash = "abd".into()),
            Box::new(|i| i.inputs[0].slot = "other".into()),
            Box::new(|i| i.files[0].hash = "f01".into()),
            Box::new(|i| i.files[0].param = "other".into()),
            Box::new(|i| {
                i.env.insert("model".into(), "m2".into());
            }),
            Box::new(|i| i.seed = 1),
            Box::new(|i| i.inputs.clear()),
        ];
        for (n, edit) in edits.iter().enumerate() {
            let mut b = base();
            edit(&mut b);
            assert_ne!(a, b.key(), "edit {n} did not change the key");
        }
    }

    #[test]
    fn strings_and_numbers_do_not_collide() {
        assert_ne!(canonical_hash(&json!("1")), canonical_hash(&json!(1)));
        assert_ne!(canonical_hash(&json!(["ab", "c"])), canonical_hash(&json!(["a", "bc"])));
        assert_eq!(canonical_hash(&json!(-0.0)), canonical_hash(&json!(0)));
    }
}
