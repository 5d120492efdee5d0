//! `resources:` of a pipeline (defaults) and of a stage: what an executor asks its scheduler for.
//! Engine-level keys beside `params`, checked with the manifest's positions; never part of a key.

use serde::Serialize;

use crate::diagnostic::Diagnostics;
use crate::manifest::yaml::{Node, NodeValue};
use crate::params::unknown_key_message;

/// The keys of a `resources:` mapping.
pub const RESOURCE_KEYS: &[&str] =
    &["cpus", "mem", "gpus", "time", "partition", "account", "qos", "constraint"];

/// What a stage asks for; `None` leaves it to the pipeline's defaults, then to the scheduler's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// CPU cores.
    pub cpus: Option<u32>,
    /// Memory: megabytes, or a number with K, M, G or T.
    pub mem: Option<String>,
    /// GPUs: a count, or `type:count`.
    pub gpus: Option<String>,
    /// Wall-clock limit: minutes, `H:MM:SS` or `D-HH[:MM[:SS]]`.
    pub time: Option<String>,
    /// Partition (queue).
    pub partition: Option<String>,
    /// Account charged.
    pub account: Option<String>,
    /// Quality of service.
    pub qos: Option<String>,
    /// Node features required.
    pub constraint: Option<String>,
}

impl Resources {
    /// Each field of `self`, or else of `defaults`.
    pub fn or(self, defaults: &Resources) -> Resources {
        let d = defaults.clone();
        Resources {
            cpus: self.cpus.or(d.cpus),
            mem: self.mem.or(d.mem),
            gpus: self.gpus.or(d.gpus),
            time: self.time.or(d.time),
            partition: self.partition.or(d.partition),
            account: self.account.or(d.account),
            qos: self.qos.or(d.qos),
            constraint: self.constraint.or(d.constraint),
        }
    }

    /// Reads a `resources:` mapping; `label` starts each message (`stage "sft": `).
    pub(crate) fn read(node: &Node, file: &str, label: &str, diags: &mut Diagnostics) -> Resources {
        let mut r = Resources::default();
        let entries = match &node.value {
            NodeValue::Map(entries) => entries,
            NodeValue::Null => return r,
            _ => {
                let keys = RESOURCE_KEYS.join(", ");
                let found = node.type_name();
                let msg =
                    format!("{label}\"resources\" must be a mapping of {keys}, found {found}");
                diags.push(file, node.pos, msg);
                return r;
            }
        };
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let parsed = match key {
                "cpus" => count(v, 1).map(|n| r.cpus = Some(n)),
                "mem" => mem(v).map(|s| r.mem = Some(s)),
                "gpus" => gpus(v).map(|s| r.gpus = Some(s)),
                "time" => time(v).map(|s| r.time = Some(s)),
                "partition" => word(v).map(|s| r.partition = Some(s)),
                "account" => word(v).map(|s| r.account = Some(s)),
                "qos" => word(v).map(|s| r.qos = Some(s)),
                "constraint" => word(v).map(|s| r.constraint = Some(s)),
                _ => {
                    let keys: Vec<String> = RESOURCE_KEYS.iter().map(|s| s.to_string()).collect();
                    let msg = unknown_key_message(key, &keys);
                    diags.push(file, k.pos, format!("{label}resources: {msg}"));
                    continue;
                }
            };
            if let Err(why) = parsed {
                diags.push(file, v.pos, format!("{label}resources.{key}: {why}"));
            }
        }
        r
    }
}

/// An integer of at least `min`.
fn count(v: &Node, min: i64) -> Result<u32, String> {
    match v.value {
        NodeValue::Int(n) if n >= min && n <= u32::MAX as i64 => Ok(n as u32),
        NodeValue::Int(n) => Err(format!("must be at least {min}, found {n}")),
        _ => Err(format!("must be an integer, found {}", v.type_name())),
    }
}

/// `16000` (megabytes) or `16G`.
fn mem(v: &Node) -> Result<String, String> {
    if let NodeValue::Int(_) = v.value {
        return count(v, 1).map(|n| n.to_string());
    }
    let s =
        v.as_str().ok_or_else(|| format!("must be a size such as 16G, found {}", v.type_name()))?;
    let upper = s.to_ascii_uppercase();
    let digits = upper.trim_end_matches(['K', 'M', 'G', 'T']);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && upper.len() - digits.len() <= 1
    {
        Ok(upper)
    } else {
        Err(format!("\"{s}\" is not a size: megabytes, or a number with K, M, G or T (16G)"))
    }
}

/// `2` or `a100:2`.
fn gpus(v: &Node) -> Result<String, String> {
    if let NodeValue::Int(_) = v.value {
        return count(v, 0).map(|n| n.to_string());
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("must be a count or type:count, found {}", v.type_name()))?;
    let ok = match s.rsplit_once(':') {
        Some((ty, n)) => is_name(ty) && is_digits(n),
        None => false,
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!("\"{s}\" is not a GPU request: a count (2) or type:count (a100:2)"))
    }
}

/// Minutes, or Slurm's `[D-]H:MM:SS` forms.
fn time(v: &Node) -> Result<String, String> {
    if let NodeValue::Int(_) = v.value {
        return count(v, 1).map(|n| n.to_string());
    }
    let s = v
        .as_str()
        .ok_or_else(|| format!("must be a duration such as 2:00:00, found {}", v.type_name()))?;
    let (days, rest) = match s.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if days.is_none_or(is_digits) && parts.len() <= 3 && parts.iter().all(|p| is_digits(p)) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "\"{s}\" is not a duration: minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]] (e.g. 2:00:00)"
        ))
    }
}

/// A partition, account, QOS or constraint: one non-empty word.
fn word(v: &Node) -> Result<String, String> {
    match v.as_str() {
        Some(s) if !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(s.to_string())
        }
        Some(s) => Err(format!("\"{s}\" must be one word without spaces")),
        None => Err(format!("must be a string, found {}", v.type_name())),
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    fn read(text: &str) -> (Resources, Vec<String>) {
        let mut d = Diagnostics::default();
        let r = Resources::read(&parse(text).unwrap(), "m.yaml", "", &mut d);
        (r, d.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn every_key_reads_and_stage_values_win_over_defaults() {
        let (r, errors) = read(
            "{cpus: 4, mem: 16g, gpus: a100:1, time: 1-02:00, partition: gpu, account: lab, qos: high, constraint: avx512}",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            (r.cpus, r.mem.as_deref(), r.gpus.as_deref()),
            (Some(4), Some("16G"), Some("a100:1"))
        );
        let defaults = Resources { cpus: Some(1), time: Some("10".into()), ..Default::default() };
        let merged = Resources { cpus: Some(8), ..Default::default() }.or(&defaults);
        assert_eq!((merged.cpus, merged.time.as_deref()), (Some(8), Some("10")));
    }

    #[test]
    fn bad_values_name_their_key_and_place() {
        let (_, errors) =
            read("cpus: 0\nmem: lots\ngpus: -1\ntime: 1:2:3:4\npartition: a b\nram: 4\n");
        assert_eq!(
            errors,
            [
                "m.yaml:1:7: resources.cpus: must be at least 1, found 0",
                "m.yaml:2:6: resources.mem: \"lots\" is not a size: megabytes, or a number with K, M, G or T (16G)",
                "m.yaml:3:7: resources.gpus: must be at least 0, found -1",
                "m.yaml:4:7: resources.time: \"1:2:3:4\" is not a duration: minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]] (e.g. 2:00:00)",
                "m.yaml:5:12: resources.partition: \"a b\" must be one word without spaces",
                "m.yaml:6:1: resources: unknown key \"ram\" (expected one of: cpus, mem, gpus, time, partition, account, qos, constraint)",
            ]
        );
    }
}
