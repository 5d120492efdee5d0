//! What train and reference_logprobs read: the base model (full precision, the checkpoint's own
//! quantization, or a `quantized_model` artifact from the quantize stage), an optional starting
//! adapter, and conversations or preference pairs from `examples` or `pairs` tables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use medalign_engine::{CheckContext, InputArtifact};
use medalign_model::quant::QuantizedModel;
use medalign_model::{LanguageModel, LinearFormat, LoadOptions, Message, Model, Weights};

use crate::pair::read_pairs;
use crate::quantize::{QUANTIZATION_FILE, QUANTIZED_WEIGHTS_FILE};
use crate::table::read_examples;

type Error = Box<dyn std::error::Error + Send + Sync>;


/// Reads the `base_model` a `quantized_model` artifact was made from.
pub fn quantized_base_spec(dir: &Path) -> Result<String, Error> {
    let path = dir.join(QUANTIZATION_FILE);
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?,
    )?;
    Ok(v["base_model"]
        .as_str()
        .ok_or_else(|| format!("{}: no base_model", path.display()))?
        .to_string())
}

/// The PEFT folder inside an `adapter` artifact: the artifact directory or its `adapter/`.
pub fn adapter_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("adapter");
    if dir.join("adapter_config.json").is_file() || !nested.is_dir() {
        dir.to_path_buf()
    } else {
        nested
    }
}

/// What a train stage's `model` param names, as the model crate loads it (registry references
/// resolved in the pipeline's store). A registered version must be whole weights.
pub fn base_spec(reference: &str, check: &CheckContext) -> Result<String, Error> {
    let source = medalign_registry::resolve(reference, &check.manifest_dir, &check.store_dir)?;
    if source.adapter.is_some() {
        return Err(format!(
            "model {reference}: {} is registered as a base model plus an adapter; train on its merged export \
             (register a `quantize` export's `merged` output) or give the adapter as the `adapter` input",
            source.id
        )
        .into());
    }
    Ok(source.spec)
}

/// Loads the frozen base: from a `quantized_model` artifact when given (its weights, the original
/// checkpoint's tokenizer and template), else `spec` with f32 or stored-quantized projections.
pub fn load_base(
    spec: &str,
    quantized: bool,
    artifact: Option<&Path>,
) -> Result<LanguageModel, Error> {
    match artifact {
        Some(dir) => {
            let base = quantized_base_spec(dir)?;
            let mut lm = LanguageModel::load(&base, &LoadOptions::inference())?;
            let q = QuantizedModel::load(&dir.join(QUANTIZED_WEIGHTS_FILE))?;
            let cfg = lm.config().clone();
            lm.model =
                Model::new(&cfg, Weights::new(Arc::new(q), Device::Cpu, LinearFormat::Quantized))?;
            Ok(lm)
        }
        None => {
            let opts = if quantized { LoadOptions::inference() } else { LoadOptions::default() };
            Ok(LanguageModel::load(spec, &opts)?)
        }
    }
}


/// One SFT conversation: id, source name, turns.
pub type Conversation = (String, String, Vec<Message>);

/// Conversations with at least one assistant turn: examples as they are; pairs as the prompt and
/// the chosen reply.
pub fn read_conversations(input: &InputArtifact) -> Result<Vec<Conversation>, Error> {
    if input.kind == "pairs" {
        return Ok(read_pairs(&input.table())?
            .into_iter()
            .map(|p| {
                let mut m = p.messages.clone();
                m.push(Message::new("assistant", p.chosen));
                (p.prompt_id, p.source, m)
            })
            .collect());
    }
    Ok(read_examples(&input.table())?
        .into_iter()
        .filter(|e| e.messages.iter().any(|m| m.role == "assistant"))
        .map(|e| (e.id, e.source, e.messages))
        .collect())
}

/// One preference pair: id, prompt turns, chosen reply, rejected reply.
pub type PreferencePair = (String, Vec<Message>, String, String);

/// Preference pairs: a `pairs` table, or examples with a `rejected` reply (the last assistant turn
/// is the chosen one).
pub fn read_preference_pairs(input: &InputArtifact) -> Result<Vec<PreferencePair>, Error> {
    if input.kind == "pairs" {
        return Ok(read_pairs(&input.table())?
            .into_iter()
            .map(|p| (p.prompt_id, p.messages, p.chosen, p.rejected))
            .collect());
    }
    Ok(read_examples(&input.table())?
        .into_iter()
        .filter_map(|e| {
            let rejected = e.rejected.clone()?;
            let last = e.messages.iter().rposition(|m| m.role == "assistant")?;
            Some((e.id, e.messages[..last].to_vec(), e.messages[last].content.clone(), rejected))
        })
        .collect())
}
