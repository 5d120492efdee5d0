//! [`RegisterConfig`]: the params of the `register` stage kind, its slots and checks.

use std::collections::BTreeMap;

use medalign_engine::{
    Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use medalign_registry::check_name;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::vertex::VertexParams;
use crate::kinds::adapter::ADAPTER;
use crate::kinds::eval_report::EVAL_REPORT;
use crate::kinds::exported_model::EXPORTED_MODEL;
use crate::kinds::registered_model::REGISTERED_MODEL;

/// Registers a model version.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterConfig {
    /// Registry name of the model; versions of a name are numbered from 1.
    pub name: String,
    /// The base model: a known name (`smollm2-135m-instruct`), a GGUF file or a safetensors
    /// directory. Default: the adapter's `base_model_name_or_path`, else the default model.
    pub base_model: Option<String>,
    /// Aliases to point at the new version besides `latest` (e.g. `staging`).
    pub aliases: Vec<String>,
    /// Shown by `medalign models show`.
    pub description: String,
    /// Write a Vertex AI deployment bundle and its Model Registry upload request.
    pub vertex: Option<VertexParams>,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            name: "medalign".into(),
            base_model: None,
            aliases: Vec::new(),
            description: String::new(),
            vertex: None,
        }
    }
}

impl StageConfig for RegisterConfig {
    const KIND: &'static str = "register";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Registers a model version (base model + optional LoRA adapter, with eval metrics) in the \
        store's registry under `name`, moves `latest` and `aliases` to it, keeps it and its lineage through gc, and \
        optionally writes a Vertex AI bundle. `medalign models` lists, shows and promotes versions.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot {
                name: "adapter",
                kinds: &[ADAPTER.name, EXPORTED_MODEL.name],
                arity: Arity::Optional,
                doc: "The LoRA adapter (none: the base model alone).",
            },
            InputSlot {
                name: "eval",
                kinds: &[EVAL_REPORT.name],
                arity: Arity::Optional,
                doc: "The eval report whose metrics are recorded.",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "model", kind: REGISTERED_MODEL.name, doc: "The registered files." }]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        if let Err(e) = check_name("model name", &self.name) {
            errors.push(ParamError::new("name", e.to_string()));
        }
        for (i, a) in self.aliases.iter().enumerate() {
            if let Err(e) = check_name("alias", a) {
                errors.push(ParamError::new(format!("aliases[{i}]"), e.to_string()));
            }
        }
        if let Some(base) = &self.base_model {
            let known = medalign_model::fetch::KnownModel::by_name(base).is_some();
            if !known && !cx.resolve(base).exists() {
                let names: Vec<&str> =
                    medalign_model::fetch::KNOWN_MODELS.iter().map(|m| m.name).collect();
                errors.push(ParamError::new(
                    "base_model",
                    format!("{base} is neither a file nor a known model ({})", names.join(", ")),
                ));
            }
        }
        if let Some(v) = &self.vertex {
            if v.project.is_empty() || v.image.is_empty() {
                errors.push(ParamError::new("vertex", "needs `project` and `image`"));
            }
        }
        errors
    }

    fn env_facts(&self, _cx: &CheckContext) -> BTreeMap<String, String> {
        // A base model named by a known name is pinned by its wheel's sha256; a path is hashed at
        // run time and recorded, not keyed, so a moved file does not re-register.
        BTreeMap::new()
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
