//! Export: a base checkpoint with a PEFT adapter folded in (`W + scaling * B A` for every adapted
//! projection), written as a Hugging Face directory that `transformers` loads: f32
//! `model.safetensors`, `config.json`, `tokenizer.json` and `tokenizer_config.json` with the chat
//! template; and, on request, GGUF files (f16, Q8_0, Q4_K) that llama.cpp loads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};
use medalign_engine::StageError;
use medalign_model::config::Architecture;
use medalign_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use medalign_model::quant::{is_projection, tensor_names};
use medalign_model::weights::{
    metadata_from_config, metadata_from_gguf, write_gguf, GgufReport, GgufSource, GgufType,
};
use medalign_model::{resolve_model, LanguageModel, LoadOptions, LoraConfig, ModelLocation};

use crate::quantize::open_source;

/// What an export wrote.
pub struct Exported {
    /// Projections the adapter changed.
    pub merged: usize,
    /// Each GGUF file written: its type, file name, and what went into it.
    pub gguf: Vec<(GgufType, String, GgufReport)>,
}

/// Merges the adapter in `adapter_dir` into the base `spec`, writes the Hugging Face model into
/// `out/merged` and one `model-<type>.gguf` per entry of `gguf` into `out`.
pub fn export_merged(
    spec: &str,
    adapter_dir: &Path,
    out: &Path,
    gguf: &[GgufType],
) -> Result<Exported, StageError> {
    let (src, cfg) = open_source(spec)?;
    let lora: LoraConfig =
        serde_json::from_slice(&std::fs::read(adapter_dir.join(ADAPTER_CONFIG_FILE))?)?;
    let mut deltas =
        candle_core::safetensors::load(adapter_dir.join(ADAPTER_WEIGHTS_FILE), &Device::Cpu)?;
    let mut tensors = HashMap::new();
    let mut merged = 0;
    for name in tensor_names(&cfg).into_iter().filter(|n| src.contains(n)) {
        let mut t = src.tensor(&name, &Device::Cpu)?;
        if is_projection(&name) {
            let module = name.trim_end_matches(".weight");
            let a = deltas.remove(&format!("base_model.model.{module}.lora_A.weight"));
            let b = deltas.remove(&format!("base_model.model.{module}.lora_B.weight"));
            if let (Some(a), Some(b)) = (a, b) {
                t = (t + (b.matmul(&a)? * lora.scaling())?)?;
                merged += 1;
            }
        }
        tensors.insert(name, t);
    }
    if let Some(left) = deltas.keys().next() {
        return Err(format!("adapter tensor `{left}` matches no projection of {spec}").into());
    }
    let dir = out.join("merged");
    std::fs::create_dir_all(&dir)?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    let mut config = serde_json::to_value(&cfg)?;
    let arch = match cfg.architecture {
        Architecture::Llama => "LlamaForCausalLM",
        Architecture::Mistral => "MistralForCausalLM",
        Architecture::Qwen2 => "Qwen2ForCausalLM",
    };
    config["architectures"] = serde_json::json!([arch]);
    config["torch_dtype"] = "float32".into();
    config["tie_word_embeddings"] = (!tensors.contains_key("lm_head.weight")).into();
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let lm = LanguageModel::load(spec, &LoadOptions::inference())?;
    lm.tokenizer
        .inner()
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| format!("tokenizer.json: {e}"))?;
    let tc = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": lm.chat_template.source(),
        "bos_token": lm.tokenizer.bos_token(),
        "eos_token": lm.tokenizer.eos_token(),
    });
    std::fs::write(dir.join("tokenizer_config.json"), serde_json::to_vec_pretty(&tc)?)?;
    let metadata = match resolve_model(spec)? {
        ModelLocation::Gguf(path) => metadata_from_gguf(GgufSource::open(&path)?.content()),
        ModelLocation::SafetensorsDir(_) => {
            metadata_from_config(&cfg, &lm.tokenizer, Some(lm.chat_template.source()))?
        }
    };
    let tensors: BTreeMap<String, Tensor> = tensors.into_iter().collect();
    let mut written = vec![];
    for ty in gguf {
        let file = format!("model-{}.gguf", ty.name());
        let report = write_gguf(&out.join(&file), &tensors, &cfg, metadata.clone(), *ty)?;
        written.push((*ty, file, report));
    }
    Ok(Exported { merged, gguf: written })
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;
    use medalign_model::testing::write_tiny_model;
    use medalign_model::{LoraAdapter, TargetModule};

    use super::*;

    /// Logits of `spec` (with `adapter` when given) on a fixed prompt, in f32.
    fn logits(spec: &Path, adapter: Option<&Path>) -> Vec<f32> {
        let mut lm = LanguageModel::load(spec.to_str().unwrap(), &LoadOptions::default()).unwrap();
        if let Some(dir) = adapter {
            lm.load_adapter(dir).unwrap();
        }
        let ids = lm.tokenizer.encode("the patient took aspirin", false).unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        lm.model.forward(&input, None, None).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    fn relative_max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn merged_and_gguf_exports_reproduce_base_plus_adapter() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        write_tiny_model(&base).unwrap();
        let mut lm = LanguageModel::load(base.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            target_modules: TargetModule::ALL.to_vec(),
            lora_dropout: 0.0,
            use_rslora: false,
        };
        let adapter = LoraAdapter::init(&mut lm.model, cfg, 3).unwrap();
        for (name, var) in adapter.named_vars() {
            if name.contains("lora_B") {
                // Deterministic, so the quantization error is the same on every run.
                let n = var.elem_count();
                let noise: Vec<f32> =
                    (0..n).map(|i| 0.2 * ((i * 7919 % 1000) as f32 / 500.0 - 1.0)).collect();
                var.set(&Tensor::from_vec(noise, var.dims(), &Device::Cpu).unwrap()).unwrap();
            }
        }
        let adapter_dir = tmp.path().join("adapter");
        adapter.save(&adapter_dir, base.to_str().unwrap()).unwrap();

        let out = tmp.path().join("out");
        let exported = export_merged(
            base.to_str().unwrap(),
            &adapter_dir,
            &out,
            &[GgufType::F16, GgufType::Q8_0, GgufType::Q4K],
        )
        .unwrap();
        assert_eq!(exported.merged, 14, "seven projections in each of two layers");

        let reference = logits(&base, Some(&adapter_dir));
        assert!(
            relative_max_diff(&reference, &logits(&base, None)) > 0.05,
            "the adapter must change the logits"
        );
        assert!(relative_max_diff(&reference, &logits(&out.join("merged"), None)) < 1e-5);
        // f16 pins the layout (a q/k permutation slip moves logits far more than 2e-3); the
        // quantized files only lose precision. The 64/96-wide tiny rows are no whole Q4_K
        // super-block, so Q4_K falls back to Q5_0 on every matrix, as llama-quantize does.
        for (file, tolerance) in
            [("model-f16.gguf", 2e-3), ("model-q8_0.gguf", 2e-2), ("model-q4_k.gguf", 0.2)]
        {
            let diff = relative_max_diff(&reference, &logits(&out.join(file), None));
            assert!(diff < tolerance, "{file}: relative max diff {diff}");
        }
        let (_, _, q4) = &exported.gguf[2];
        assert_eq!(
            q4.fallbacks.len(),
            16,
            "14 projections, the embedding and the output head: {:?}",
            q4.fallbacks
        );
        assert!(q4.fallbacks.values().all(|t| t == "Q5_0"));
    }

    #[test]
    fn gguf_types_are_named_as_users_write_them() {
        let parsed: Vec<GgufType> = serde_yaml::from_str("[f16, q8_0, q4_k]").unwrap();
        assert_eq!(parsed, vec![GgufType::F16, GgufType::Q8_0, GgufType::Q4K]);
    }
}
