//! The `dedupe` stage kind's params: quality filters, decontamination, near-duplicate, semantic and
//! relevance steps, the slots and checks.
//!
//! Inputs: `examples` (one or more tables to merge and clean) and `eval` (eval sets to decontaminate
//! against). Outputs: `examples` (what survives) and `removed` (every dropped row, with the reason).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use medalign_engine::{
    Arity, CheckContext, InputFile, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError,
};
use medalign_model::fetch::{KnownEncoder, KNOWN_ENCODERS};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::dedupe::quality::QualityConfig;
use crate::dedupe::semantic::{RelevanceConfig, SemanticConfig};
use crate::kinds::examples::EXAMPLES;
use crate::kinds::removed::REMOVED;

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
    /// Semantic near-duplicates from sentence embeddings (off by default).
    #[serde(default)]
    pub semantic: SemanticConfig,
    /// Clinical relevance: similarity to topic descriptions, with an optional minimum.
    #[serde(default)]
    pub relevance: RelevanceConfig,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig {
            priority: Vec::new(),
            exact: true,
            near: NearConfig::default(),
            decontaminate: DecontaminateConfig::default(),
            quality: QualityConfig::default(),
            semantic: SemanticConfig::default(),
            relevance: RelevanceConfig::default(),
        }
    }
}

/// Where the sentence encoder's files are.
pub(super) enum EncoderSource {
    /// A model fetched by name into the cache.
    Known(&'static KnownEncoder),
    /// A sentence-transformers directory named in the params.
    Dir(PathBuf),
}

/// The files of a sentence-transformers directory that decide its output.
const ENCODER_FILES: [&str; 5] = [
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

impl DedupeConfig {
    /// Whether a step needs sentence embeddings.
    pub fn needs_embeddings(&self) -> bool {
        self.semantic.enabled || self.relevance.enabled()
    }

    /// Resolves `semantic.model`: a known name, else a directory with `config.json`.
    pub(super) fn encoder_source(&self, cx: &CheckContext) -> Result<EncoderSource, String> {
        if let Some(known) = KnownEncoder::by_name(&self.semantic.model) {
            return Ok(EncoderSource::Known(known));
        }
        let dir = cx.resolve(&self.semantic.model);
        if dir.join("config.json").is_file() {
            return Ok(EncoderSource::Dir(dir));
        }
        let names: Vec<&str> = KNOWN_ENCODERS.iter().map(|m| m.name).collect();
        Err(format!(
            "{:?} is neither a known encoder ({}) nor a directory with config.json, tokenizer.json and model.safetensors",
            self.semantic.model,
            names.join(", ")
        ))
    }
}

impl StageConfig for DedupeConfig {
    const KIND: &'static str = "dedupe";
    // 2: near-duplicate bands chosen with recall weight 0.99 (was 0.9), which finds more pairs.
    // 3: `semantic` and `relevance` steps; metrics `removed.semantic_duplicate` and `removed.low_relevance`.
    // 4: decontamination looks for what eval items show the model (prompt turns, context, choices),
    //    not their reference answers, which no eval shows: boilerplate in MedSafetyBench's safe
    //    responses matched 232 training rows whose requests never appear in the eval sets.
    const VERSION: u32 = 5;
    const DOC: &'static str = "Merges examples tables and removes low-quality rows, rows overlapping eval sets \
        (13-gram decontamination against what the eval items show the model: prompts, contexts, choices), exact duplicates, MinHash/LSH near-duplicates and (when enabled) semantic \
        near-duplicates by sentence-embedding cosine, and scores clinical relevance against topic descriptions; \
        the most trusted source's copy survives, and every removed row goes to `removed` with the reason and the id it matched.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot {
                name: "examples",
                kinds: &[EXAMPLES.name],
                arity: Arity::AtLeastOne,
                doc: "the tables to clean, merged in order",
            },
            InputSlot {
                name: "eval",
                kinds: &[EXAMPLES.name],
                arity: Arity::Many,
                doc: "eval sets no training row may overlap",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[
            OutputSlot {
                name: "examples",
                kind: EXAMPLES.name,
                doc: "the surviving rows, in input order",
            },
            OutputSlot {
                name: "removed",
                kind: REMOVED.name,
                doc: "every removed row with reason, matched id and score",
            },
        ]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        let near = &self.near;
        if !(near.threshold > 0.0 && near.threshold <= 1.0) {
            errors.push(ParamError::new(
                "near.threshold",
                format!("expected a similarity in (0, 1], got {}", near.threshold),
            ));
        }
        if !(1..=4096).contains(&near.permutations) {
            errors.push(ParamError::new(
                "near.permutations",
                format!("expected 1..4096, got {}", near.permutations),
            ));
        }
        if !(near.recall_weight > 0.0 && near.recall_weight < 1.0) {
            errors.push(ParamError::new(
                "near.recall_weight",
                format!("expected a weight in (0, 1), got {}", near.recall_weight),
            ));
        }
        if let Some(b) = near.bands {
            if b == 0 || b > near.permutations {
                let msg = format!(
                    "expected 1..{} (at most the permutations), got {b}",
                    near.permutations
                );
                errors.push(ParamError::new("near.bands", msg));
            }
        }
        if near.shingle == 0 {
            errors.push(ParamError::new("near.shingle", "expected at least 1 word"));
        }
        if self.decontaminate.ngram == 0 {
            errors.push(ParamError::new("decontaminate.ngram", "expected at least 1 word"));
        }
        errors.extend(self.check_embedding_steps(cx));
        let mut seen = BTreeSet::new();
        for (i, p) in self.priority.iter().enumerate() {
            if !seen.insert(p) {
                errors.push(ParamError::new(
                    format!("priority[{i}]"),
                    format!("{p:?} is listed twice"),
                ));
            }
        }
        errors
    }

    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        match self.encoder_source(cx) {
            Ok(EncoderSource::Dir(dir)) if self.needs_embeddings() => ENCODER_FILES
                .iter()
                .map(|f| dir.join(f))
                .filter(|p| p.is_file())
                .map(|path| InputFile { param: "semantic.model".into(), path })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn env_facts(&self, cx: &CheckContext) -> BTreeMap<String, String> {
        // A known encoder is pinned: its weights' sha256 is checked when fetched, so it keys the output.
        let mut facts = BTreeMap::new();
        if let (true, Ok(EncoderSource::Known(m))) =
            (self.needs_embeddings(), self.encoder_source(cx))
        {
            facts.insert(
                "dedupe.encoder".into(),
                format!("{} {}=={} sha256:{}", m.name, m.package, m.version, m.weights_sha256),
            );
        }
        facts
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}

impl DedupeConfig {
    /// The errors of the `semantic` and `relevance` sections.
    fn check_embedding_steps(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        let s = &self.semantic;
        if !(s.threshold > 0.0 && s.threshold <= 1.0) {
            errors.push(ParamError::new(
                "semantic.threshold",
                format!("expected a cosine in (0, 1], got {}", s.threshold),
            ));
        }
        if !(1..=4096).contains(&s.batch) {
            errors.push(ParamError::new(
                "semantic.batch",
                format!("expected 1..4096, got {}", s.batch),
            ));
        }
        if self.needs_embeddings() {
            if let Err(e) = self.encoder_source(cx) {
                errors.push(ParamError::new("semantic.model", e));
            }
        }
        let r = &self.relevance;
        if let Some(m) = r.min_score {
            if !(-1.0..=1.0).contains(&m) {
                errors.push(ParamError::new(
                    "relevance.min_score",
                    format!("expected a cosine in [-1, 1], got {m}"),
                ));
            }
            if r.topics.is_empty() {
                errors.push(ParamError::new(
                    "relevance.min_score",
                    "needs relevance.topics: a list of topic descriptions",
                ));
            }
        }
        for (i, t) in r.topics.iter().enumerate() {
            if t.trim().is_empty() {
                errors.push(ParamError::new(
                    format!("relevance.topics[{i}]"),
                    "expected a topic description, got an empty string",
                ));
            }
        }
        errors
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
