//! [`TrainConfig`]: the params of the `train` stage kind, its slots, their checks, and the loop's
//! figures they resolve to (total and warmup steps, AdamW's params); the trainer reads them as
//! they are.

pub use crate::precision::Precision;

use medalign_engine::{
    Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use medalign_model::{LoraConfig, TargetModule};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::data::LossOn;
use super::dpo::DpoParams;
use super::optimizer::{AdamWParams, Schedule};
use crate::kinds::adapter::ADAPTER;
use crate::kinds::examples::EXAMPLES;
use crate::kinds::pairs::PAIRS;
use crate::kinds::quantized_model::QUANTIZED_MODEL;
use crate::kinds::reference_logprobs::REFERENCE_LOGPROBS;

/// SFT or DPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Supervised fine-tuning on conversations.
    Sft,
    /// Direct preference optimization on pairs.
    Dpo,
}

/// LoRA hyper-parameters (PEFT's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoraParams {
    /// Rank.
    pub r: usize,
    /// Scale numerator (`alpha / r`).
    pub alpha: f64,
    /// Projections to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    pub target_modules: Vec<String>,
    /// Scale by `alpha / sqrt(r)`.
    pub use_rslora: bool,
}

impl Default for LoraParams {
    fn default() -> Self {
        Self {
            r: 16,
            alpha: 32.0,
            target_modules: TargetModule::ALL.iter().map(|m| m.name().to_string()).collect(),
            use_rslora: false,
        }
    }
}

impl LoraParams {
    /// The model crate's config (no dropout: candle's dropout cannot be seeded, and a CPU run
    /// must be bit-for-bit reproducible).
    pub fn to_lora_config(&self) -> Result<LoraConfig, String> {
        let targets = self
            .target_modules
            .iter()
            .map(|n| TargetModule::from_name(n).ok_or_else(|| format!("unknown LoRA target `{n}`")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LoraConfig {
            r: self.r,
            lora_alpha: self.alpha,
            lora_dropout: 0.0,
            target_modules: targets,
            use_rslora: self.use_rslora,
        })
    }
}

/// Fine-tunes a LoRA adapter with SFT or DPO over a frozen (optionally quantized) base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// `sft` or `dpo`.
    pub method: Method,
    /// Base model: a known name, a GGUF file or a safetensors directory (ignored when a `base`
    /// input from the quantize stage is connected).
    pub model: String,
    /// Keep the checkpoint's own quantized projections (e.g. GGUF Q4_1) as the frozen base.
    pub quantized_base: bool,
    /// LoRA.
    pub lora: LoraParams,
    /// Longest sequence in tokens (longer examples are cut).
    pub max_seq_len: usize,
    /// SFT: pack short examples into one row (they never attend to each other).
    pub packing: bool,
    /// SFT: `assistant` (loss on assistant turns only) or `all`.
    pub loss_on: LossOn,
    /// SFT: at most this many examples of a source (ingest's source name, e.g. `{medquad: 400}`),
    /// evenly spread over its rows, to set the mix; the rest are counted in `examples_unused`.
    pub source_limits: std::collections::BTreeMap<String, usize>,
    /// Rows (SFT) or pairs (DPO) per micro-batch.
    pub batch_size: usize,
    /// Recompute each layer in backward instead of keeping its activations: much less memory
    /// for about a third more compute (what QLoRA setups usually turn on).
    pub gradient_checkpointing: bool,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Optimizer steps; 0 means `epochs` passes over the data.
    pub max_steps: usize,
    /// Passes over the data when `max_steps` is 0.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// `cosine`, `linear` or `constant` after warmup.
    pub schedule: Schedule,
    /// Warmup steps (takes precedence over `warmup_ratio` when set).
    pub warmup_steps: Option<usize>,
    /// Warmup as a fraction of all steps.
    pub warmup_ratio: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW's betas.
    pub betas: [f64; 2],
    /// AdamW's epsilon.
    pub eps: f64,
    /// Clip the global gradient norm (0: off).
    pub max_grad_norm: f64,
    /// Seeds LoRA initialization, the shuffle and the held-out split.
    pub seed: u64,
    /// Fraction of the data held out for eval loss.
    pub eval_fraction: f64,
    /// Evaluate every this many steps (0: before and after training only).
    pub eval_every: usize,
    /// Checkpoint every this many steps (0: never).
    pub checkpoint_every: usize,
    /// `auto` (bf16 where the CPU has AVX-512 BF16), `bf16` or `f32`: the precision of the
    /// frozen base's products. bf16 rounds their inputs and accumulates in f32, as autocast does.
    pub precision: Precision,
    /// DPO loss parameters.
    pub dpo: DpoParams,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Sft,
            model: "smollm2-135m-instruct".into(),
            quantized_base: false,
            lora: LoraParams::default(),
            max_seq_len: 512,
            packing: true,
            loss_on: LossOn::Assistant,
            source_limits: Default::default(),
            batch_size: 4,
            gradient_checkpointing: false,
            grad_accum: 1,
            max_steps: 0,
            epochs: 1,
            lr: 2e-4,
            schedule: Schedule::Cosine,
            warmup_steps: None,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            betas: [0.9, 0.999],
            eps: 1e-8,
            max_grad_norm: 1.0,
            seed: 42,
            eval_fraction: 0.05,
            eval_every: 0,
            checkpoint_every: 50,
            precision: Precision::Auto,
            dpo: DpoParams::default(),
        }
    }
}

impl TrainConfig {
    /// Range checks, every problem at once.
    pub fn problems(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut e = Vec::new();
        let mut need = |ok: bool, path: &str, msg: &str| {
            if !ok {
                e.push(ParamError::new(path, msg));
            }
        };
        need(self.lora.r >= 1, "lora.r", "must be at least 1");
        need(
            self.lora.to_lora_config().is_ok(),
            "lora.target_modules",
            "use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
        );
        need(self.max_seq_len >= 8, "max_seq_len", "must be at least 8");
        need(
            self.precision != Precision::Quantized,
            "precision",
            "training needs full-precision products: auto, bf16 or f32 (a 4-bit base is `quantized_base`)",
        );
        need(self.batch_size >= 1, "batch_size", "must be at least 1");
        need(self.grad_accum >= 1, "grad_accum", "must be at least 1");
        need(self.max_steps > 0 || self.epochs > 0, "epochs", "set max_steps or epochs");
        need(self.lr > 0.0 && self.lr.is_finite(), "lr", "must be positive");
        need((0.0..1.0).contains(&self.warmup_ratio), "warmup_ratio", "must be in [0, 1)");
        need((0.0..0.9).contains(&self.eval_fraction), "eval_fraction", "must be in [0, 0.9)");
        need(self.betas.iter().all(|b| (0.0..1.0).contains(b)), "betas", "each must be in [0, 1)");
        need(self.dpo.beta > 0.0, "dpo.beta", "must be positive");
        need(
            (0.0..0.5).contains(&self.dpo.label_smoothing),
            "dpo.label_smoothing",
            "must be in [0, 0.5)",
        );
        e
    }

    /// Optimizer steps in all for `batches_per_epoch` micro-batches of data: `max_steps`, or
    /// `epochs` passes.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        if self.max_steps > 0 {
            self.max_steps
        } else {
            (self.epochs * batches_per_epoch).div_ceil(self.grad_accum).max(1)
        }
    }

    /// Optimizer steps of linear warmup out of `total_steps`.
    pub fn warmup(&self, total_steps: usize) -> usize {
        self.warmup_steps.unwrap_or((self.warmup_ratio * total_steps as f64).ceil() as usize)
    }

    /// AdamW's params.
    pub fn adamw(&self) -> AdamWParams {
        AdamWParams {
            betas: (self.betas[0], self.betas[1]),
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }
}

impl StageConfig for TrainConfig {
    const KIND: &'static str = "train";
    // 2: metrics.parquet and tensorboard/ moved into the adapter's run record (_run/).
    const VERSION: u32 = 3;
    const DOC: &'static str = "Trains a LoRA adapter with SFT (loss on assistant tokens, packing without cross-example \
        attention) or DPO (sigmoid, ipo or hinge against cached reference log-probabilities) over a frozen base, \
        full precision or quantized (QLoRA). AdamW, warmup + cosine/linear, gradient accumulation, clipping; \
        checkpoints in the work directory make a killed run resume to the same bytes. Writes the adapter in \
        PEFT's format and training_config.json, with metrics.parquet and TensorBoard events in its run record \
        (_run/), which is kept but not hashed, so a rerun that trains the same weights leaves consumers cached.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot {
                name: "data",
                kinds: &[EXAMPLES.name, PAIRS.name],
                arity: Arity::One,
                doc: "Conversations (SFT) or preference pairs (DPO).",
            },
            InputSlot {
                name: "base",
                kinds: &[QUANTIZED_MODEL.name],
                arity: Arity::Optional,
                doc: "A quantized frozen base from the quantize stage.",
            },
            InputSlot {
                name: "adapter",
                kinds: &[ADAPTER.name],
                arity: Arity::Optional,
                doc: "An adapter to continue from (e.g. SFT's, for DPO).",
            },
            InputSlot {
                name: "reference",
                kinds: &[REFERENCE_LOGPROBS.name],
                arity: Arity::Optional,
                doc: "DPO reference log-probabilities (computed here when absent).",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "adapter", kind: ADAPTER.name, doc: "The PEFT adapter and training_config.json; its run record _run/ holds metrics.parquet and tensorboard/." }]
    }

    fn env_facts(&self, cx: &CheckContext) -> std::collections::BTreeMap<String, String> {
        crate::model_params::registry_facts([("model", Some(self.model.as_str()))], cx)
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        self.problems(cx)
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
