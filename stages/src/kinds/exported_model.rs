//! The `exported_model` artifact kind: an adapter merged into its base by export, which register
//! accepts as well as a plain adapter.

use medalign_engine::ArtifactKind;

/// The `exported_model` artifact kind: the adapter it came from, the merged model and its GGUFs.
pub const EXPORTED_MODEL: ArtifactKind = ArtifactKind {
    name: "exported_model",
    doc: "an adapter merged into its base: the PEFT adapter files, merged/ (safetensors, config.json, tokenizer) and model-<type>.gguf files",
    schema_json: None,
};
