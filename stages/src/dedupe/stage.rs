//! The run of a `dedupe` stage over the engine's inputs and outputs.
//!
//! Relevance scores of kept rows are reported as distribution metrics (`relevance.p50`, ...), since
//! the `examples` schema has no column for them; removed rows carry theirs in `removed.score`.

use medalign_engine::{RunContext, StageError};
use medalign_model::bert::SentenceEncoder;

use super::config::{DedupeConfig, EncoderSource};
use crate::dedupe::pass::dedupe_with;
use crate::dedupe::quality::REASONS;
use crate::dedupe::semantic::{distribution, Embedder, EncoderEmbedder};
use crate::kinds::examples::{read_examples, write_examples};
use crate::kinds::removed::write_removed;

/// Runs a stage with params `cfg`.
pub fn run(cfg: &DedupeConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let mut rows = Vec::new();
    for input in cx.inputs("examples") {
        rows.extend(read_examples(&input.table())?);
    }
    let mut eval = Vec::new();
    for input in cx.inputs("eval") {
        eval.extend(read_examples(&input.table())?);
    }
    let rows_in = rows.len();
    cx.progress().set_message(format!("{rows_in} rows, {} eval items", eval.len()));
    let embedder = load_embedder(cfg, cx)?;
    let out =
        dedupe_with(cfg, rows, &eval, cx.seed(), embedder.as_ref().map(|e| e as &dyn Embedder))?;
    write_examples(&cx.output_table("examples"), &out.kept)?;
    write_removed(&cx.output_table("removed"), &out.removed)?;
    cx.metric("rows_in", rows_in as u64);
    cx.metric("rows_out", out.kept.len() as u64);
    cx.metric("rows_removed", out.removed.len() as u64);
    for reason in removal_reasons() {
        cx.metric(format!("removed.{reason}"), out.count(reason) as u64);
    }
    cx.metric("eval_rows", eval.len() as u64);
    cx.metric("eval_too_short", out.eval_skipped as u64);
    if cfg.near.enabled {
        cx.metric("lsh_bands", out.lsh.0 as u64);
        cx.metric("lsh_rows_per_band", out.lsh.1 as u64);
    }
    if let Some(scores) = &out.relevance {
        for (name, v) in distribution(scores) {
            cx.metric(format!("relevance.{name}"), v);
        }
    }
    Ok(())
}

/// Every reason a row can be removed for.
pub fn removal_reasons() -> impl Iterator<Item = &'static str> {
    REASONS.into_iter().chain([
        "contaminated",
        "exact_duplicate",
        "near_duplicate",
        "semantic_duplicate",
        "low_relevance",
    ])
}

/// The sentence encoder, when a step needs it (fetching a known model on first use).
fn load_embedder(
    cfg: &DedupeConfig,
    cx: &RunContext<'_>,
) -> Result<Option<EncoderEmbedder>, StageError> {
    if !cfg.needs_embeddings() {
        return Ok(None);
    }
    let check = cx.check_context().clone();
    let dir = match cfg.encoder_source(&check).map_err(|e| format!("semantic.model: {e}"))? {
        EncoderSource::Known(m) => m.ensure().map_err(|e| format!("semantic.model: {e}"))?,
        EncoderSource::Dir(d) => d,
    };
    let encoder = SentenceEncoder::load(&dir)
        .map_err(|e| format!("semantic.model {}: {e}", dir.display()))?;
    Ok(Some(EncoderEmbedder { encoder, batch: cfg.semantic.batch }))
}
