//! [`IngestConfig`]: the params of the `ingest` stage kind (the sources and what to do with a
//! record that cannot be read), its slots and checks.

use std::collections::BTreeMap;

use medalign_engine::{
    CheckContext, InputFile, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ingest::source::Source;
use crate::kinds::examples::EXAMPLES;
use crate::kinds::rejected::REJECTED;

/// What to do with a record that cannot be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the stage, naming each bad record as `file:line: field "x": what is wrong`.
    #[default]
    Fail,
    /// Write bad records, with the reason, to the `rejected` output and go on.
    Quarantine,
}

/// Params of the `ingest` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IngestConfig {
    /// The files or folders to read, each with its format.
    pub sources: Vec<Source>,
    /// `fail` (the default) stops at malformed records; `quarantine` sets them aside in `rejected`.
    #[serde(default)]
    pub on_error: OnError,
}

impl StageConfig for IngestConfig {
    const KIND: &'static str = "ingest";
    const VERSION: u32 = 2;
    const DOC: &'static str = "Reads medical datasets in their public formats (MedQA, PubMedQA, MedMCQA, MedDialog, MMLU, \
        OpenAI chat, Alpaca, preference pairs, MedSafetyBench, or any JSONL/CSV through a field mapping) into one \
        normalized examples table. Malformed records stop the stage, or go to `rejected` with on_error: quarantine.";

    fn inputs() -> &'static [InputSlot] {
        &[]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[
            OutputSlot {
                name: "examples",
                kind: EXAMPLES.name,
                doc: "the normalized examples, in source order",
            },
            OutputSlot {
                name: "rejected",
                kind: REJECTED.name,
                doc: "records set aside under on_error: quarantine",
            },
        ]
    }

    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = Vec::new();
        if self.sources.is_empty() {
            errors.push(ParamError::new("sources", "give at least one source"));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = |field: &str| format!("sources[{i}].{field}");
            if let Some(first) = names.insert(s.name(), i) {
                let msg = format!(
                    "{:?} is already the name of sources[{first}]; give each source its own name",
                    s.name()
                );
                errors.push(ParamError::new(at("name"), msg));
            }
            if !cx.resolve(&s.path).exists() {
                errors.push(ParamError::new(
                    at("path"),
                    format!("{} does not exist", cx.resolve(&s.path).display()),
                ));
            }
            let fmt = s.format.name();
            match (s.format.is_generic(), &s.fields, &s.task) {
                (true, None, _) => errors.push(ParamError::new(
                    at("fields"),
                    format!("format {fmt} needs a field mapping"),
                )),
                (true, _, None) => {
                    errors.push(ParamError::new(at("task"), format!("format {fmt} needs a task")))
                }
                (false, Some(_), _) => errors.push(ParamError::new(
                    at("fields"),
                    "only formats jsonl and csv take a field mapping",
                )),
                (false, _, Some(_)) => errors
                    .push(ParamError::new(at("task"), format!("format {fmt} sets its own task"))),
                _ => {}
            }
            if s.prompts_only && !s.format.is_generic() {
                errors.push(ParamError::new(
                    at("prompts_only"),
                    "only formats jsonl and csv can be prompts only",
                ));
            } else if s.prompts_only && s.fields.as_ref().is_some_and(|f| f.response.is_some()) {
                errors.push(ParamError::new(
                    at("fields.response"),
                    "a prompts_only source has no response field: drop one of the two",
                ));
            }
        }
        errors
    }

    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        let mut files = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            for f in s.files(&cx.resolve(&s.path)).unwrap_or_default() {
                files.push(InputFile { param: format!("sources[{i}].path"), path: f.path });
            }
        }
        files
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        super::stage::run(self, cx)
    }
}
