//! Typed parsing of a stage's `params:` mapping: every unknown key (with a "did you mean") and the
//! first type error, each with its path inside params.

use serde_json::Value as Json;

use crate::kind::{ParamsError, StageConfig};

/// Parses `params` into `C`, collecting unknown keys as errors (never silently ignored).
pub(crate) fn parse<C: StageConfig>(
    params: &serde_yaml::Value,
    schema: &Json,
) -> Result<C, Vec<ParamsError>> {
    let mut unknown: Vec<Vec<String>> = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(ignored_segments(&path));
    let de = serde_ignored::Deserializer::new(params.clone(), &mut on_ignored);
    let result: Result<C, _> = serde_path_to_error::deserialize(de);
    let mut errors: Vec<ParamsError> = unknown
        .iter()
        .map(|segs| {
            let (parent, key) = segs.split_at(segs.len() - 1);
            let candidates = property_names(schema, parent);
            ParamsError {
                path: join_path(segs),
                message: unknown_key_message(&key[0], &candidates),
            }
        })
        .collect();
    match result {
        Ok(c) if errors.is_empty() => Ok(c),
        Ok(_) => Err(errors),
        Err(e) => {
            let segs: Vec<String> = e.path().iter().map(segment_text).collect();
            errors.push(ParamsError {
                path: join_path(&segs),
                message: clean_serde_message(&e.inner().to_string()),
            });
            Err(errors)
        }
    }
}

/// `unknown key "lr_rate" (did you mean "lr"?)`, or the list of valid keys when nothing is close.
pub(crate) fn unknown_key_message(key: &str, candidates: &[String]) -> String {
    match did_you_mean(key, candidates.iter().map(String::as_str)) {
        Some(best) => format!("unknown key \"{key}\" (did you mean \"{best}\"?)"),
        None if candidates.is_empty() => {
            format!("unknown key \"{key}\" (this mapping takes no keys)")
        }
        None => format!("unknown key \"{key}\" (expected one of: {})", candidates.join(", ")),
    }
}

/// The closest candidate by Jaro-Winkler similarity, when it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn ignored_segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path as P;
    match path {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = ignored_segments(parent);
            v.push(format!("[{index}]"));
            v
        }
        P::Map { parent, key } => {
            let mut v = ignored_segments(parent);
            v.push(key.clone());
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_segments(parent)
        }
    }
}

fn segment_text(seg: &serde_path_to_error::Segment) -> String {
    use serde_path_to_error::Segment as S;
    match seg {
        S::Seq { index } => format!("[{index}]"),
        S::Map { key } => key.clone(),
        S::Enum { variant } => variant.clone(),
        S::Unknown => "?".into(),
    }
}

/// Joins segments as `sources[1].path`.
pub(crate) fn join_path(segs: &[String]) -> String {
    let mut out = String::new();
    for s in segs {
        if !s.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(s);
    }
    out
}

/// Splits `sources[1].path` into `["sources", "[1]", "path"]`.
pub(crate) fn split_path(path: &str) -> Vec<String> {
    let mut segs = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        while let Some(open) = rest.find('[') {
            if open > 0 {
                segs.push(rest[..open].to_string());
            }
            let close = rest[open..].find(']').map(|c| open + c + 1).unwrap_or(rest.len());
            segs.push(rest[open..close].to_string());
            rest = &rest[close..];
        }
        if !rest.is_empty() {
            segs.push(rest.to_string());
        }
    }
    segs
}

/// serde says `unknown variant `x`, expected one of `a`, `b``; we say it with quotes users can copy.
fn clean_serde_message(msg: &str) -> String {
    let mut msg = msg.replace('`', "\"");
    for (rust, user) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u64", "expected a whole number >= 0"),
        ("expected u32", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
    ] {
        if msg.ends_with(rust) {
            msg = format!("{}{user}", &msg[..msg.len() - rust.len()]);
        }
    }
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Property names of the sub-schema at `path` (following `$ref`, arrays, `anyOf`/`oneOf`).
fn property_names(root: &Json, path: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for schema in schemas_at(root, root, path) {
        if let Some(props) = schema.get("properties").and_then(Json::as_object) {
            for k in props.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    names
}

fn schemas_at<'a>(root: &'a Json, schema: &'a Json, path: &[String]) -> Vec<&'a Json> {
    let schema = resolve_ref(root, schema);
    let mut alternatives: Vec<&Json> = Vec::new();
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = schema.get(key).and_then(Json::as_array) {
            alternatives.extend(list.iter());
        }
    }
    if !alternatives.is_empty() {
        return alternatives.into_iter().flat_map(|s| schemas_at(root, s, path)).collect();
    }
    let Some((first, rest)) = path.split_first() else {
        return vec![schema];
    };
    let next = if first.starts_with('[') {
        schema.get("items")
    } else {
        schema
            .get("properties")
            .and_then(|p| p.get(first))
            .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
    };
    next.map(|n| schemas_at(root, n, rest)).unwrap_or_default()
}

fn resolve_ref<'a>(root: &'a Json, schema: &'a Json) -> &'a Json {
    match schema.get("$ref").and_then(Json::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .and_then(|p| p.split('/').try_fold(root, |acc, seg| acc.get(seg)))
            .map(|s| resolve_ref(root, s))
            .unwrap_or(schema),
        None => schema,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_and_join() {
        let segs = split_path("sources[1].path");
        assert_eq!(segs, vec!["sources", "[1]", "path"]);
        assert_eq!(join_path(&segs), "sources[1].path");
        assert_eq!(split_path("a[0][2].b"), vec!["a", "[0]", "[2]", "b"]);
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("lr_rate", ["lr", "epochs", "lr_rate_x"]), Some("lr_rate_x"));
        assert_eq!(did_you_mean("bta", ["beta", "loss"]), Some("beta"));
        assert_eq!(did_you_mean("zzz", ["beta", "loss"]), None);
    }
}
