//! Params of the `pair` stage kind: how pairs are chosen (by judge or by rule), the thresholds,
//! the verified-pairs file, the slots and checks.

use std::collections::HashMap;

use medalign_engine::{
    Arity, CheckContext, InputFile, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::candidates::CANDIDATES;
use crate::kinds::examples::EXAMPLES;
use crate::kinds::judgments::JUDGMENTS;
use crate::kinds::pairs::PAIRS;
use crate::pair::select::Verified;

/// What picks the chosen and rejected response of a pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PairBy {
    /// The judges' scores: best against worst when the margin is wide enough.
    #[default]
    Judge,
    /// The reference (`safe_generator`) against the model's answer the refusal rules call wrong (an
    /// answer to a harmful request, a refusal of a benign one), else, on a benign prompt, against
    /// the model's answer the judges like least. For judges too weak to pick pairs themselves; their
    /// agreement with these labels is reported.
    Rules,
}

/// Params of the `pair` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PairConfig {
    /// `judge` (default) or `rules`.
    #[serde(default)]
    pub by: PairBy,
    /// Smallest difference of mean scores (1-5 scale, higher is better) that makes a pair; closer
    /// prompts are ties, dropped and counted.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Smallest difference for gold, which also needs every judge to prefer the chosen response.
    #[serde(default = "default_gold_margin")]
    pub gold_margin: f64,
    /// The generator of the dataset's reference answer: chosen in safety pairs (the safe response),
    /// and in every pair `by: rules`.
    #[serde(default = "default_safe_generator")]
    pub safe_generator: String,
    /// `by: rules`: also pair each benign prompt the model already answers, the reference against
    /// the model's answer the judges like least (default true). False keeps only the pairs the
    /// rules decide, so DPO spends every step on a wrong refusal or a harmful compliance.
    #[serde(default = "default_reference_pairs")]
    pub reference_pairs: bool,
    /// A JSONL file of pairs people verified, `{"prompt_id", "chosen", "rejected"}` with generator
    /// names; they are gold whatever the judges said. Relative to the manifest.
    #[serde(default)]
    pub verified: Option<String>,
}

fn default_reference_pairs() -> bool {
    true
}
fn default_margin() -> f64 {
    0.5
}
fn default_gold_margin() -> f64 {
    1.5
}
fn default_safe_generator() -> String {
    "reference".into()
}

impl PairConfig {
    /// Reads the verified file: prompt id -> generators, errors as `file:line: field "x": ...`.
    pub fn read_verified(&self, cx: &CheckContext) -> Result<HashMap<String, Verified>, String> {
        let Some(p) = &self.verified else { return Ok(HashMap::new()) };
        let file = cx.resolve(p);
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut out = HashMap::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = format!("{}:{}", file.display(), i + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{at}: not JSON: {e}"))?;
            let field = |k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("{at}: field {k:?}: expected a string"))
            };
            out.insert(
                field("prompt_id")?,
                Verified { chosen: field("chosen")?, rejected: field("rejected")? },
            );
        }
        Ok(out)
    }
}

impl StageConfig for PairConfig {
    const KIND: &'static str = "pair";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Turns judged candidates into DPO pairs. By judge: best against worst per prompt when the \
        score margin is wide enough (ties dropped and counted); gold when every judge agrees and the margin is large, or \
        a person verified it; silver the rest; for harmful requests the safe response is chosen. By rules: the \
        reference against the model's answer the refusal rules call wrong, or its worst-judged answer to a benign \
        prompt, with the judges' agreement with that order as a metric.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot {
                name: "judgments",
                kinds: &[JUDGMENTS.name],
                arity: Arity::AtLeastOne,
                doc: "the judges' scores",
            },
            InputSlot {
                name: "responses",
                kinds: &[CANDIDATES.name, EXAMPLES.name],
                arity: Arity::AtLeastOne,
                doc: "what was judged",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot {
            name: "pairs",
            kind: PAIRS.name,
            doc: "one chosen/rejected pair per prompt",
        }]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        if !(self.margin >= 0.0 && self.margin <= 4.0) {
            errors.push(ParamError::new("margin", format!("expected 0 to 4, got {}", self.margin)));
        }
        if !(self.gold_margin >= self.margin && self.gold_margin <= 4.0) {
            errors.push(ParamError::new(
                "gold_margin",
                format!("expected margin ({}) to 4, got {}", self.margin, self.gold_margin),
            ));
        }
        if let Err(e) = self.read_verified(cx) {
            errors.push(ParamError::new("verified", e));
        }
        errors
    }

    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        self.verified
            .iter()
            .map(|p| InputFile { param: "verified".into(), path: cx.resolve(p) })
            .collect()
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
