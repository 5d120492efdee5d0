//! [`QuantizeConfig`]: the params of the `quantize` stage kind, its slots and checks.

use medalign_engine::{
    CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use medalign_model::weights::{GgufSource, SafetensorsSource, WeightSource};
use medalign_model::{resolve_model, Config, ModelLocation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::quantized_model::QUANTIZED_MODEL;

/// Weight format of the quantized projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// 4-bit NormalFloat (QLoRA).
    Nf4,
    /// ggml Q8_0.
    Q8_0,
    /// ggml Q4_0.
    Q4_0,
}

/// Quantizes a base model for QLoRA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizeConfig {
    /// Base model: a known name, a GGUF file or a safetensors directory.
    pub model: String,
    /// `nf4`, `q8_0` or `q4_0`.
    pub format: Format,
    /// NF4: weights per block maximum (must divide every row length).
    pub block_size: usize,
    /// NF4: quantize the block maxima to 8 bits too.
    pub double_quant: bool,
}

impl Default for QuantizeConfig {
    fn default() -> Self {
        Self {
            model: "smollm2-135m-instruct".into(),
            format: Format::Nf4,
            block_size: 64,
            double_quant: true,
        }
    }
}

/// The base checkpoint as a tensor source, with its config.
pub fn open_source(spec: &str) -> Result<(Box<dyn WeightSource>, Config), StageError> {
    Ok(match resolve_model(spec)? {
        ModelLocation::Gguf(path) => {
            let src = GgufSource::open(&path)?;
            let cfg = Config::from_gguf(src.content())?;
            (Box::new(src), cfg)
        }
        ModelLocation::SafetensorsDir(dir) => (
            Box::new(SafetensorsSource::open_dir(&dir)?),
            Config::from_json_file(&dir.join("config.json"))?,
        ),
    })
}

impl StageConfig for QuantizeConfig {
    const KIND: &'static str = "quantize";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Turns the base's seven projections per layer into NF4 with double quantization \
        (or ggml Q8_0/Q4_0), the frozen base of QLoRA, and reports each matrix's reconstruction error.";

    fn inputs() -> &'static [InputSlot] {
        &[]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "model", kind: QUANTIZED_MODEL.name, doc: "The quantized base." }]
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut e = vec![];
        if self.format == Format::Nf4 && (self.block_size < 2 || self.block_size % 2 != 0) {
            e.push(ParamError::new("block_size", "must be an even number (64 in QLoRA)"));
        }
        e
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
