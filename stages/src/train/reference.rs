//! DPO's reference log-probabilities as their own cached artifact (the `reference_logprobs` stage
//! kind): the frozen base (plus a starting adapter, when DPO continues from SFT) scores every
//! pair's chosen and rejected reply once, so a resumed run or a new `beta` reuses them.

use medalign_engine::{
    Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use medalign_model::layers::bf16_products;
use medalign_model::{LoraAdapter, Model};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::batch::{row_logprobs, Batch};
use super::config::Precision;
use super::data::{ChatTokenizer, PairSequence, Row};
use super::load::{base_spec, load_base, read_preference_pairs};
use crate::kinds::adapter::ADAPTER;
use crate::kinds::examples::EXAMPLES;
use crate::kinds::pairs::PAIRS;
use crate::kinds::quantized_model::QUANTIZED_MODEL;
use crate::kinds::reference_logprobs::{write_reference, ReferenceLogprobs, REFERENCE_LOGPROBS};

/// Scores every pair with `model` as it is (no gradients), `batch_size` pairs at a time, the
/// frozen products in bf16 when `bf16` (as the policy's in training).
pub fn compute_reference(
    model: &Model,
    pairs: &[PairSequence],
    batch_size: usize,
    pad_id: u32,
    bf16: bool,
) -> medalign_model::Result<Vec<(String, ReferenceLogprobs)>> {
    bf16_products(bf16, || score_pairs(model, pairs, batch_size, pad_id))
}

fn score_pairs(
    model: &Model,
    pairs: &[PairSequence],
    batch_size: usize,
    pad_id: u32,
) -> medalign_model::Result<Vec<(String, ReferenceLogprobs)>> {
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_size.max(1)) {
        let one = |s: &super::data::Sequence| {
            let mut r = Row::default();
            r.push(s);
            r
        };
        let rows: Vec<Row> = chunk
            .iter()
            .map(|p| one(&p.chosen))
            .chain(chunk.iter().map(|p| one(&p.rejected)))
            .collect();
        let b = Batch::new(&rows, pad_id, model.device())?;
        let lp: Vec<f32> = row_logprobs(model, &b, false)?.to_vec1()?;
        let n = chunk.len();
        for (i, p) in chunk.iter().enumerate() {
            let r = ReferenceLogprobs {
                chosen: lp[i] as f64,
                rejected: lp[n + i] as f64,
                chosen_tokens: p.chosen.targets(),
                rejected_tokens: p.rejected.targets(),
            };
            out.push((p.id.clone(), r));
        }
    }
    Ok(out)
}

/// Computes DPO reference log-probabilities once, as their own artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReferenceLogprobsConfig {
    /// Base model (ignored when a `base` input is connected); must match the train stage's.
    pub model: String,
    /// Keep the checkpoint's own quantized projections; must match the train stage's.
    pub quantized_base: bool,
    /// Longest sequence in tokens; must match the train stage's.
    pub max_seq_len: usize,
    /// Pairs per forward pass.
    pub batch_size: usize,
    /// Precision of the frozen base's products; must match the train stage's.
    pub precision: Precision,
}

impl Default for ReferenceLogprobsConfig {
    fn default() -> Self {
        Self {
            model: "smollm2-135m-instruct".into(),
            quantized_base: false,
            max_seq_len: 512,
            batch_size: 4,
            precision: Precision::Auto,
        }
    }
}

impl StageConfig for ReferenceLogprobsConfig {
    const KIND: &'static str = "reference_logprobs";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Scores each preference pair's chosen and rejected reply under the frozen reference model (the base, \
        plus a starting adapter when given) once, so DPO runs with other betas or losses, and resumed runs, reuse them.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot {
                name: "pairs",
                kinds: &[PAIRS.name, EXAMPLES.name],
                arity: Arity::One,
                doc: "Preference pairs (or examples with a rejected reply).",
            },
            InputSlot {
                name: "base",
                kinds: &[QUANTIZED_MODEL.name],
                arity: Arity::Optional,
                doc: "A quantized base from the quantize stage.",
            },
            InputSlot {
                name: "adapter",
                kinds: &[ADAPTER.name],
                arity: Arity::Optional,
                doc: "The adapter DPO starts from (e.g. SFT's).",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot {
            name: "reference",
            kind: REFERENCE_LOGPROBS.name,
            doc: "Reference log-probabilities per pair.",
        }]
    }

    fn env_facts(&self, cx: &CheckContext) -> std::collections::BTreeMap<String, String> {
        crate::model_params::registry_facts([("model", Some(self.model.as_str()))], cx)
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut e = vec![];
        if self.max_seq_len < 8 {
            e.push(ParamError::new("max_seq_len", "must be at least 8"));
        }
        if self.batch_size == 0 {
            e.push(ParamError::new("batch_size", "must be at least 1"));
        }
        e
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let input = cx.input("pairs").ok_or("no pairs input")?.clone();
        let base = cx.input("base").map(|a| a.dir.clone());
        let spec = base_spec(&self.model, cx.check_context())?;
        let mut lm = load_base(&spec, self.quantized_base, base.as_deref())?;
        if let Some(a) = cx.input("adapter") {
            LoraAdapter::load(&a.dir, &mut lm.model)?;
        }
        let tk = ChatTokenizer {
            tokenizer: &lm.tokenizer,
            template: &lm.chat_template,
            max_len: self.max_seq_len,
        };
        let mut pairs = vec![];
        for (id, prompt, chosen, rejected) in read_preference_pairs(&input)? {
            pairs.extend(tk.pair(&id, &prompt, &chosen, &rejected)?);
        }
        cx.progress().set_length(pairs.len() as u64);
        let pad = lm.tokenizer.eos_id().unwrap_or(0);
        let mut rows = Vec::with_capacity(pairs.len());
        for chunk in pairs.chunks(self.batch_size * 4) {
            rows.extend(compute_reference(
                &lm.model,
                chunk,
                self.batch_size,
                pad,
                self.precision.bf16(),
            )?);
            cx.progress().inc(chunk.len() as u64);
        }
        write_reference(&cx.output_table("reference"), &rows)?;
        cx.metric("pairs", rows.len());
        Ok(())
    }
}
