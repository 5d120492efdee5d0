//! The `dedupe` stage kind: its params and how it runs over the engine's inputs and outputs.
//!
//! Inputs: `examples` (one or more tables to merge and clean) and `eval` (eval sets to decontaminate
//! against). Outputs: `examples` (what survives) and `removed` (every dropped row, with the reason).

use std::collections::BTreeSet;

use medalign_engine::{Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dedupe::pass::dedupe;
use crate::dedupe::quality::{QualityConfig, REASONS};
use crate::table;

fn yes() -> bool {
    true
}

/// Near-duplicate detection with MinHash and banded LSH.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NearConfig {
    /// Whether to look for near-duplicates at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Words per shingle.
    #[serde(default = "default_shingle")]
    pub shingle: usize,
    /// MinHash permutations (signature length).
    #[serde(default = "default_permutations")]
    pub permutations: usize,
    /// LSH bands (rows per band = permutations / bands); by default the split that minimizes the
    /// weighted false-positive and false-negative areas at `threshold`, as datasketch chooses it.
    #[serde(default)]
    pub bands: Option<usize>,
    /// Weight of missed pairs against extra candidates when choosing bands (datasketch: 0.5; default
    /// 0.99). Every candidate is verified against `threshold`, so extra candidates cost time, not precision.
    #[serde(default = "default_recall_weight")]
    pub recall_weight: f64,
    /// Estimated Jaccard similarity at or above which two rows are near-duplicates.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Seed of the permutations; by default the pipeline seed.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_shingle() -> usize {
    5
}
fn default_permutations() -> usize {
    128
}
fn default_threshold() -> f64 {
    0.8
}
fn default_recall_weight() -> f64 {
    // 0.99 gives 18 bands of 7 rows at threshold 0.8 and 128 permutations: every pair that datasketch
    // finds with a true Jaccard >= 0.8 on the benchmark corpus (0.9, 14 x 9, missed 1 in 100);
    // see BENCHMARKS.md.
    0.99
}

impl Default for NearConfig {
    fn default() -> Self {
        NearConfig {
            enabled: true,
            shingle: default_shingle(),
            permutations: default_permutations(),
            bands: None,
            recall_weight: default_recall_weight(),
            threshold: default_threshold(),
            seed: None,
        }
    }
}

/// Decontamination against the eval sets bound to the `eval` input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecontaminateConfig {
    /// Words per n-gram (13 as in GPT-3 and lm-evaluation-harness).
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    /// Distinct shared n-grams needed to call a row contaminated.
    #[serde(default = "default_min_matches")]
    pub min_matches: usize,
}

fn default_ngram() -> usize {
    13
}
fn default_min_matches() -> usize {
    1
}

impl Default for DecontaminateConfig {
    fn default() -> Self {
        DecontaminateConfig { ngram: default_ngram(), min_matches: default_min_matches() }
    }
}

/// Params of the `dedupe` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DedupeConfig {
    /// Source names, most trusted first: of a group of duplicates, the copy from the earliest source
    /// survives. Unlisted sources come after, in input order.
    #[serde(default)]
    pub priority: Vec<String>,
    /// Remove rows whose text equals an earlier row's after lowercasing and dropping punctuation.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Near-duplicate detection.
    #[serde(default)]
    pub near: NearConfig,
    /// Eval-set decontamination (active when `eval` inputs are bound).
    #[serde(default)]
    pub decontaminate: DecontaminateConfig,
    /// Quality filters.
    #[serde(default)]
    pub quality: QualityConfig,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            priority: Vec::new(),
            exact: true,
            near: NearConfig::default(),
            decontaminate: DecontaminateConfig::default(),
            quality: QualityConfig::default(),
        }
    }
}

/// Every reason a row can be removed for.
pub fn removal_reasons() -> impl Iterator<Item = &'static str> {
    REASONS.into_iter().chain(["contaminated", "exact_duplicate", "near_duplicate"])
}

impl StageConfig for DedupeConfig {
    const KIND: &'static str = "dedupe";
    // 2: near-duplicate bands chosen with recall weight 0.99 (was 0.9), which finds more pairs.
    const VERSION: u32 = 2;
    const DOC: &'static str = "Merges examples tables and removes low-quality rows, rows overlapping eval sets \
        (13-gram decontamination), exact duplicates and MinHash/LSH near-duplicates; the most trusted source's \
        copy survives, and every removed row goes to `removed` with the reason and the id it matched.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot { name: "examples", kinds: &["examples"], arity: Arity::AtLeastOne, doc: "the tables to clean, merged in order" },
            InputSlot { name: "eval", kinds: &["examples"], arity: Arity::Many, doc: "eval sets no training row may overlap" },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[
            OutputSlot { name: "examples", kind: "examples", doc: "the surviving rows, in input order" },
            OutputSlot { name: "removed", kind: "removed", doc: "every removed row with reason, matched id and score" },
        ]
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        let near = &self.near;
        if !(near.threshold > 0.0 && near.threshold <= 1.0) {
            errors.push(ParamError::new("near.threshold", format!("expected a similarity in (0, 1], got {}", near.threshold)));
        }
        if !(1..=4096).contains(&near.permutations) {
            errors.push(ParamError::new("near.permutations", format!("expected 1..4096, got {}", near.permutations)));
        }
        if !(near.recall_weight > 0.0 && near.recall_weight < 1.0) {
            errors.push(ParamError::new("near.recall_weight", format!("expected a weight in (0, 1), got {}", near.recall_weight)));
        }
        if let Some(b) = near.bands {
            if b == 0 || b > near.permutations {
                let msg = format!("expected 1..{} (at most the permutations), got {b}", near.permutations);
                errors.push(ParamError::new("near.bands", msg));
            }
        }
        if near.shingle == 0 {
            errors.push(ParamError::new("near.shingle", "expected at least 1 word"));
        }
        if self.decontaminate.ngram == 0 {
            errors.push(ParamError::new("decontaminate.ngram", "expected at least 1 word"));
        }
        let mut seen = BTreeSet::new();
        for (i, p) in self.priority.iter().enumerate() {
            if !seen.insert(p) {
                errors.push(ParamError::new(format!("priority[{i}]"), format!("{p:?} is listed twice")));
            }
        }
        errors
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let mut rows = Vec::new();
        for input in cx.inputs("examples") {
            rows.extend(table::read_examples(&input.table())?);
        }
        let mut eval = Vec::new();
        for input in cx.inputs("eval") {
            eval.extend(table::read_examples(&input.table())?);
        }
        let rows_in = rows.len();
        cx.progress().set_message(format!("{rows_in} rows, {} eval items", eval.len()));
        let out = dedupe(self, rows, &eval, cx.seed());
        table::write_examples(&cx.output_table("examples"), &out.kept)?;
        table::write_removed(&cx.output_table("removed"), &out.removed)?;
        cx.metric("rows_in", rows_in as u64);
        cx.metric("rows_out", out.kept.len() as u64);
        cx.metric("rows_removed", out.removed.len() as u64);
        for reason in removal_reasons() {
            cx.metric(format!("removed.{reason}"), out.count(reason) as u64);
        }
        cx.metric("eval_rows", eval.len() as u64);
        cx.metric("eval_too_short", out.eval_skipped as u64);
        if self.near.enabled {
            cx.metric("lsh_bands", out.lsh.0 as u64);
            cx.metric("lsh_rows_per_band", out.lsh.1 as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_defaults_are_the_yaml_defaults() {
        let from_yaml: DedupeConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(from_yaml, DedupeConfig::default());
        let q: QualityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(q, QualityConfig::default());
    }
}
