//! [`ExportConfig`]: the params of the `export` stage kind, its slots and checks.

use medalign_engine::{
    Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use medalign_model::weights::GgufType;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::adapter::ADAPTER;
use crate::kinds::exported_model::EXPORTED_MODEL;

/// Folds the `adapter` input into the base and writes the merged model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// Base model: a known name, a GGUF file or a safetensors directory.
    pub model: String,
    /// Also write the merged model as GGUF, one `model-<type>.gguf` per type (`f16`, `q8_0`,
    /// `q4_k`), for llama.cpp.
    pub gguf: Vec<GgufType>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self { model: "smollm2-135m-instruct".into(), gguf: vec![] }
    }
}

impl StageConfig for ExportConfig {
    const KIND: &'static str = "export";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Folds the `adapter` input into the base and writes merged/ (safetensors + config.json + \
        tokenizer) for transformers, and with `gguf: [f16, q8_0, q4_k]` model-<type>.gguf files for llama.cpp; the \
        adapter's own files stay beside them, so `register` can record both.";

    fn inputs() -> &'static [InputSlot] {
        &[InputSlot {
            name: "adapter",
            kinds: &[ADAPTER.name],
            arity: Arity::One,
            doc: "The adapter to merge.",
        }]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot {
            name: "model",
            kind: EXPORTED_MODEL.name,
            doc: "The adapter, merged/ and the GGUF files.",
        }]
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut e = vec![];
        if self.model.trim().is_empty() {
            e.push(ParamError::new("model", "give the base model the adapter was trained on"));
        }
        e
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
