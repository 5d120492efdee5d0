//! Export: a base checkpoint with a PEFT adapter folded in (`W + scaling * B A` for every adapted
//! projection), written as a Hugging Face directory that `transformers` loads: f32
//! `model.safetensors`, `config.json`, `tokenizer.json` and `tokenizer_config.json` with the chat
//! template.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use medalign_engine::StageError;
use medalign_model::config::Architecture;
use medalign_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use medalign_model::quant::{is_projection, tensor_names};
use medalign_model::{LanguageModel, LoadOptions, LoraConfig};

use super::config::open_source;

/// Merges the adapter in `adapter_dir` into the base `spec` and writes the model into `out`;
/// returns how many matrices changed.
pub fn export_merged(spec: &str, adapter_dir: &Path, out: &Path) -> Result<usize, StageError> {
    let (src, cfg) = open_source(spec)?;
    let lora: LoraConfig = serde_json::from_slice(&std::fs::read(adapter_dir.join(ADAPTER_CONFIG_FILE))?)?;
    let mut deltas = candle_core::safetensors::load(adapter_dir.join(ADAPTER_WEIGHTS_FILE), &Device::Cpu)?;
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
    std::fs::create_dir_all(out)?;
    let tensors: HashMap<String, Tensor> = tensors;
    candle_core::safetensors::save(&tensors, out.join("model.safetensors"))?;
    let mut config = serde_json::to_value(&cfg)?;
    let arch = match cfg.architecture {
        Architecture::Llama => "LlamaForCausalLM",
        Architecture::Mistral => "MistralForCausalLM",
        Architecture::Qwen2 => "Qwen2ForCausalLM",
    };
    config["architectures"] = serde_json::json!([arch]);
    config["torch_dtype"] = "float32".into();
    config["tie_word_embeddings"] = (!tensors.contains_key("lm_head.weight")).into();
    std::fs::write(out.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let lm = LanguageModel::load(spec, &LoadOptions::inference())?;
    lm.tokenizer.inner().save(out.join("tokenizer.json"), false).map_err(|e| format!("tokenizer.json: {e}"))?;
    let tc = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": lm.chat_template.source(),
        "bos_token": lm.tokenizer.bos_token(),
        "eos_token": lm.tokenizer.eos_token(),
    });
    std::fs::write(out.join("tokenizer_config.json"), serde_json::to_vec_pretty(&tc)?)?;
    Ok(merged)
}

/// Copies the files of `from` (recursively) into `to`.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() { copy_dir(&src, &dst)? } else { std::fs::copy(&src, &dst).map(|_| ())? }
    }
    Ok(())
}
