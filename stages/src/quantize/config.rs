//! [`QuantizeConfig`]: the params of the `quantize` stage kind and its run.

use medalign_engine::{
    ArtifactKind, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig,
    StageError,
};
use medalign_model::quant::{QuantFormat, QuantizedModel};
use medalign_model::weights::{GgufSource, SafetensorsSource, WeightSource};
use medalign_model::{resolve_model, Config, ModelLocation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};


/// The quantized weights inside a `quantized_model` artifact.
pub const QUANTIZED_WEIGHTS_FILE: &str = "model.safetensors";
/// The quantization report inside a `quantized_model` artifact: format and per-matrix errors.
pub const QUANTIZATION_FILE: &str = "quantization.json";

/// The `quantized_model` artifact kind.
pub const QUANTIZED_MODEL: ArtifactKind = ArtifactKind {
    name: "quantized_model",
    doc: "a frozen quantized base: model.safetensors (NF4/ggml projections, f32 rest) and quantization.json (format, per-matrix errors)",
    schema_json: None,
};

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
        &[OutputSlot { name: "model", kind: "quantized_model", doc: "The quantized base." }]
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut e = vec![];
        if self.format == Format::Nf4 && (self.block_size < 2 || self.block_size % 2 != 0) {
            e.push(ParamError::new("block_size", "must be an even number (64 in QLoRA)"));
        }
        e
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let (src, cfg) = open_source(&self.model)?;
        let format = match self.format {
            Format::Nf4 => {
                QuantFormat::Nf4 { block_size: self.block_size, double_quant: self.double_quant }
            }
            Format::Q8_0 => QuantFormat::Q8_0,
            Format::Q4_0 => QuantFormat::Q4_0,
        };
        cx.progress().set_message("quantizing");
        let (q, errors) = QuantizedModel::quantize(src.as_ref(), &cfg, format)?;
        let out = cx.output_dir("model").to_path_buf();
        q.save(&out.join(QUANTIZED_WEIGHTS_FILE))?;
        let mean = errors.iter().map(|(_, e)| e.relative).sum::<f64>() / errors.len().max(1) as f64;
        let worst = errors.iter().map(|(_, e)| e.relative).fold(0.0, f64::max);
        let report = serde_json::json!({
            "base_model": self.model,
            "format": format,
            "quantized_bytes": q.quantized_bytes(),
            "errors": errors.iter().map(|(n, e)| (n.clone(), e)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        std::fs::write(out.join(QUANTIZATION_FILE), serde_json::to_vec_pretty(&report)?)?;
        cx.metric("matrices", errors.len());
        cx.metric("mean_relative_error", mean);
        cx.metric("max_relative_error", worst);
        cx.metric("quantized_mb", q.quantized_bytes() as f64 / 1048576.0);
        Ok(())
    }
}
