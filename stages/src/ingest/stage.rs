//! The run of an `ingest` stage: reads every source and writes one normalized `examples` table, plus
//! the `rejected` table of records set aside under `on_error: quarantine`.
//!
//! Rows in = rows out + rows rejected, always; the counts are the metrics `rows_in`, `rows_out`,
//! `rows_rejected`, and the same per source (`rows_in.medqa`). A file without records is a warning
//! in the run summary; when no source has any record, the stage fails.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use medalign_engine::{RunContext, StageError};

use super::config::{IngestConfig, OnError};
use crate::ingest::decode;
use crate::ingest::record::{FileInput, Parsed, RecordError};
use crate::ingest::source::Source;
use crate::kinds::examples::{write_examples, Example};
use crate::kinds::rejected::{write_rejected, Rejection};

/// How many errors a failing ingest lists before summing up the rest.
const ERRORS_SHOWN: usize = 20;

/// Row counts of one source or of the whole stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Records read.
    pub rows_in: u64,
    /// Examples written.
    pub rows_out: u64,
    /// Records rejected.
    pub rows_rejected: u64,
}

/// What [`IngestConfig::ingest`] produced.
#[derive(Clone, Debug, Default)]
pub struct Ingested {
    /// The examples, in source and file order.
    pub examples: Vec<Example>,
    /// The rejected records (empty unless quarantining).
    pub rejected: Vec<Rejection>,
    /// Counts per source name, in source order.
    pub counts: Vec<(String, Counts)>,
    /// Inputs without records: `path: no records`, one per file (or folder without files).
    pub warnings: Vec<String>,
}

/// One record after parsing and [`finish`]: the finished example, or the error and the record's text.
struct Read {
    origin: String,
    result: Result<Example, (RecordError, String)>,
    /// The record's raw bytes in base64, when they are not UTF-8.
    base64: Option<String>,
}

impl IngestConfig {
    /// Reads every source; `resolve` turns a params path into a file path. Fails on the first bad file,
    /// on bad records unless quarantining, or when no source has any record.
    ///
    /// Files are decoded line by line (a line that is not UTF-8 rejects its record), then parsed and
    /// their rows finished (ids, provenance, content hash) in parallel; the duplicate-id check then
    /// runs once over all of them, in source and file order.
    pub fn ingest(
        &self,
        resolve: impl Fn(&str) -> std::path::PathBuf,
    ) -> Result<Ingested, StageError> {
        use rayon::prelude::*;
        let mut files_read: Vec<(usize, Vec<Read>)> = Vec::new();
        let mut warnings = Vec::new();
        for (s, source) in self.sources.iter().enumerate() {
            let resolved = resolve(&source.path);
            let files = source.files(&resolved).map_err(|e| format!("{}: {e}", source.path))?;
            if files.is_empty() {
                let exts: Vec<String> =
                    source.format.extensions().iter().map(|e| format!(".{e}")).collect();
                warnings.push(format!(
                    "{}: no records (no {} files in the folder)",
                    source.path,
                    exts.join(" or ")
                ));
            }
            for file in files {
                let bytes =
                    std::fs::read(&file.path).map_err(|e| format!("{}: {e}", file.display))?;
                let decoded = decode::decode(&bytes);
                let stem = file.path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let input = FileInput { display: &file.display, text: &decoded.text, stem };
                let mut parsed = source.parse(&input)?;
                let base64 = decoded.reject_bad_lines(&mut parsed, &file.display)?;
                if parsed.is_empty() {
                    let why =
                        if decoded.text.trim().is_empty() { " (the file is empty)" } else { "" };
                    warnings.push(format!("{}: no records{why}", file.display));
                }
                let reads = parsed
                    .into_par_iter()
                    .enumerate()
                    .map(|(index, Parsed { line, raw, result })| {
                        let origin = format!("{}:{line}", file.display);
                        let result = match result {
                            Ok(e) => Ok(finish(e, source, &file.prefix, index, &origin, raw)),
                            Err(err) => Err((err, raw)),
                        };
                        Read { origin, result, base64: base64.get(&index).cloned() }
                    })
                    .collect();
                files_read.push((s, reads));
            }
        }
        if files_read.iter().all(|(_, reads)| reads.is_empty()) {
            warnings.push("no records in any source".into());
            return Err(warnings.join("\n").into());
        }
        let duplicates = duplicate_ids(&files_read);

        let mut out = Ingested::default();
        out.examples.reserve(files_read.iter().map(|(_, r)| r.len()).sum());
        let mut counts = vec![Counts::default(); self.sources.len()];
        let mut errors = Vec::new();
        for (f, (s, reads)) in files_read.into_iter().enumerate() {
            let (source, counts) = (&self.sources[s], &mut counts[s]);
            for (r, Read { origin, result, base64 }) in reads.into_iter().enumerate() {
                counts.rows_in += 1;
                let result = match (result, duplicates.get(&(f, r))) {
                    (Ok(e), Some(msg)) => Err((RecordError::field("id", msg.clone()), e.original)),
                    (result, _) => result,
                };
                match result {
                    Ok(e) => {
                        counts.rows_out += 1;
                        out.examples.push(e);
                    }
                    Err((err, raw)) => {
                        counts.rows_rejected += 1;
                        let reason = err.reason();
                        match self.on_error {
                            OnError::Fail => errors.push(format!("{origin}: {reason}")),
                            OnError::Quarantine => out.rejected.push(Rejection {
                                source: source.name().into(),
                                origin,
                                reason,
                                record: raw,
                                record_base64: base64,
                            }),
                        }
                    }
                }
            }
        }
        out.counts =
            self.sources.iter().zip(counts).map(|(s, c)| (s.name().to_string(), c)).collect();
        out.warnings = warnings;
        if !errors.is_empty() {
            let mut msg = errors.iter().take(ERRORS_SHOWN).cloned().collect::<Vec<_>>().join("\n");
            if errors.len() > ERRORS_SHOWN {
                msg.push_str(&format!(
                    "\n... and {} more malformed records",
                    errors.len() - ERRORS_SHOWN
                ));
            }
            return Err(msg.into());
        }
        Ok(out)
    }
}

/// The rows, as (file, row) positions, whose id an earlier row already has, each with its message.
fn duplicate_ids(files: &[(usize, Vec<Read>)]) -> HashMap<(usize, usize), String> {
    let mut first: HashMap<&str, &str> =
        HashMap::with_capacity(files.iter().map(|(_, r)| r.len()).sum());
    let mut duplicates = HashMap::new();
    for (f, (_, reads)) in files.iter().enumerate() {
        for (r, read) in reads.iter().enumerate() {
            let Ok(e) = &read.result else { continue };
            match first.entry(e.id.as_str()) {
                Entry::Occupied(at) => {
                    duplicates
                        .insert((f, r), format!("duplicate id {:?} (first at {})", e.id, at.get()));
                }
                Entry::Vacant(slot) => {
                    slot.insert(read.origin.as_str());
                }
            }
        }
    }
    duplicates
}

/// Fills the provenance columns of a parsed example and hashes it.
fn finish(
    mut e: Example,
    source: &Source,
    prefix: &str,
    index: usize,
    origin: &str,
    raw: String,
) -> Example {
    e.id = if e.id.is_empty() { format!("{prefix}:{index}") } else { format!("{prefix}:{}", e.id) };
    e.source = source.name().to_string();
    e.origin = origin.to_string();
    e.original = raw;
    if source.split.is_some() {
        e.split = source.split.clone();
    }
    e.with_hash()
}

/// Runs an ingest stage with params `cfg`.
pub fn run(cfg: &IngestConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    cx.progress().set_message("reading sources");
    let ingested = cfg.ingest(|p| cx.resolve(p))?;
    write_examples(&cx.output_table("examples"), &ingested.examples)?;
    write_rejected(&cx.output_table("rejected"), &ingested.rejected)?;
    for w in &ingested.warnings {
        cx.warn(w.as_str());
    }
    let mut total = Counts::default();
    for (name, c) in &ingested.counts {
        cx.metric(format!("rows_in.{name}"), c.rows_in);
        cx.metric(format!("rows_out.{name}"), c.rows_out);
        cx.metric(format!("rows_rejected.{name}"), c.rows_rejected);
        total.rows_in += c.rows_in;
        total.rows_out += c.rows_out;
        total.rows_rejected += c.rows_rejected;
    }
    debug_assert_eq!(total.rows_in, total.rows_out + total.rows_rejected);
    cx.metric("rows_in", total.rows_in);
    cx.metric("rows_out", total.rows_out);
    cx.metric("rows_rejected", total.rows_rejected);
    Ok(())
}
