//! The run of a `quantize` stage: the base's projections quantized, written with the report of
//! per-matrix errors.

use medalign_engine::{RunContext, StageError};
use medalign_model::quant::{QuantFormat, QuantizedModel};

use super::config::{open_source, Format, QuantizeConfig};
use crate::kinds::quantized_model::{QUANTIZATION_FILE, QUANTIZED_WEIGHTS_FILE};

/// Runs a stage with params `cfg`.
pub fn run(cfg: &QuantizeConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let (src, model_config) = open_source(&cfg.model)?;
    let format = match cfg.format {
        Format::Nf4 => {
            QuantFormat::Nf4 { block_size: cfg.block_size, double_quant: cfg.double_quant }
        }
        Format::Q8_0 => QuantFormat::Q8_0,
        Format::Q4_0 => QuantFormat::Q4_0,
    };
    cx.progress().set_message("quantizing");
    let (q, errors) = QuantizedModel::quantize(src.as_ref(), &model_config, format)?;
    let out = cx.output_dir("model").to_path_buf();
    q.save(&out.join(QUANTIZED_WEIGHTS_FILE))?;
    let mean = errors.iter().map(|(_, e)| e.relative).sum::<f64>() / errors.len().max(1) as f64;
    let worst = errors.iter().map(|(_, e)| e.relative).fold(0.0, f64::max);
    let report = serde_json::json!({
        "base_model": cfg.model,
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
