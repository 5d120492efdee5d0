//! Small stage kinds for the engine's tests and benchmarks: text sources, transforms with
//! checkpoints, joins and a Parquet table. They show the whole [`StageConfig`] surface.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kind::{
    Arity, ArtifactKind, CheckContext, InputFile, InputSlot, KindRegistry, OutputSlot, ParamError,
    StageConfig, StageError,
};
use crate::run_context::RunContext;

/// The schema of the `rows` artifact kind.
pub const ROWS_SCHEMA: &str = r#"{"fields":[
 {"name":"line","data_type":"Int64","nullable":false,"dict_id":0,"dict_is_ordered":false,"metadata":{}},
 {"name":"text","data_type":"Utf8","nullable":false,"dict_id":0,"dict_is_ordered":false,"metadata":{}}
],"metadata":{}}"#;

/// Registers the test kinds and their artifact kinds.
pub fn register(r: &mut KindRegistry) {
    r.artifact(ArtifactKind { name: "text", doc: "A text file, text.txt.", schema_json: None })
        .artifact(ArtifactKind {
            name: "rows",
            doc: "Numbered lines as a table.",
            schema_json: Some(ROWS_SCHEMA),
        })
        .register::<Source>()
        .register::<Transform>()
        .register::<Join>()
        .register::<Table>();
}

const TEXT_FILE: &str = "text.txt";

fn read_text(cx: &RunContext<'_>, slot: &str) -> Result<Vec<String>, StageError> {
    cx.inputs(slot).iter().map(|a| Ok(std::fs::read_to_string(a.dir.join(TEXT_FILE))?)).collect()
}

fn write_text(cx: &RunContext<'_>, text: &str) -> Result<(), StageError> {
    Ok(std::fs::write(cx.output_dir("text").join(TEXT_FILE), text)?)
}

/// A text artifact from a literal or a file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Source {
    /// The text to emit.
    pub text: String,
    /// A file to append, relative to the manifest; its content is part of the key.
    pub file: Option<String>,
}

impl StageConfig for Source {
    const KIND: &'static str = "source";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Emits `text`, then the content of `file`.";
    fn inputs() -> &'static [InputSlot] {
        &[]
    }
    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "text", kind: "text", doc: "The text." }]
    }
    fn check(&self, cx: &CheckContext) -> Vec<ParamError> {
        match &self.file {
            Some(f) if !cx.resolve(f).is_file() => {
                vec![ParamError::new("file", format!("file {f} not found"))]
            }
            _ => Vec::new(),
        }
    }
    fn input_files(&self, cx: &CheckContext) -> Vec<InputFile> {
        self.file.iter().map(|f| InputFile { param: "file".into(), path: cx.resolve(f) }).collect()
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let mut text = self.text.clone();
        if let Some(f) = &self.file {
            text.push_str(&std::fs::read_to_string(cx.resolve(f))?);
        }
        cx.metric("chars", text.chars().count() as u64);
        write_text(cx, &text)
    }
}

/// Case operations of [`Transform`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Unchanged.
    #[default]
    Keep,
    /// Upper case.
    Upper,
    /// Lower case.
    Lower,
}

/// Transforms its input's text in `steps` checkpointed steps.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Transform {
    /// What to do to the text.
    pub op: Op,
    /// Steps; the step reached is checkpointed in the work directory, so a killed run resumes.
    pub steps: u32,
    /// Milliseconds each step sleeps.
    pub step_ms: u64,
    /// Fail with this message instead of finishing.
    pub fail: Option<String>,
    /// A learning rate, which does nothing (for reason tests).
    pub lr: f64,
}

impl Default for Transform {
    fn default() -> Self {
        Transform { op: Op::Keep, steps: 1, step_ms: 0, fail: None, lr: 1e-4 }
    }
}

impl StageConfig for Transform {
    const KIND: &'static str = "transform";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Changes the case of its input, slowly if asked, resuming from checkpoints.";
    fn inputs() -> &'static [InputSlot] {
        &[InputSlot { name: "input", kinds: &["text"], arity: Arity::One, doc: "The text." }]
    }
    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "text", kind: "text", doc: "The transformed text." }]
    }
    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        if self.steps == 0 {
            return vec![ParamError::new("steps", "must be at least 1")];
        }
        Vec::new()
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        if let Some(msg) = &self.fail {
            // One step's work before failing, so a failed stage has a time to report.
            std::thread::sleep(std::time::Duration::from_millis(self.step_ms));
            return Err(msg.clone().into());
        }
        let text = read_text(cx, "input")?.concat();
        let ckpt = cx.work_dir().join("step");
        let start: u32 =
            std::fs::read_to_string(&ckpt).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        cx.metric("resumed_from", start);
        cx.progress().set_length(self.steps as u64);
        for step in start..self.steps {
            std::thread::sleep(std::time::Duration::from_millis(self.step_ms));
            std::fs::write(&ckpt, (step + 1).to_string())?;
            cx.progress().inc(1);
        }
        let out = match self.op {
            Op::Keep => text,
            Op::Upper => text.to_uppercase(),
            Op::Lower => text.to_lowercase(),
        };
        write_text(cx, &out)
    }
}

/// Joins any number of texts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Join {
    /// Put between parts.
    pub sep: String,
    /// Pin the result through gc under this name.
    pub pin: Option<String>,
}

impl StageConfig for Join {
    const KIND: &'static str = "join";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Joins its inputs' texts with `sep`.";
    fn inputs() -> &'static [InputSlot] {
        &[InputSlot {
            name: "parts",
            kinds: &["text"],
            arity: Arity::AtLeastOne,
            doc: "Texts to join.",
        }]
    }
    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "text", kind: "text", doc: "The joined text." }]
    }
    fn env_facts(&self, _cx: &CheckContext) -> BTreeMap<String, String> {
        std::env::var("MEDALIGN_TEST_ENV")
            .map(|v| BTreeMap::from([("test_env".to_string(), v)]))
            .unwrap_or_default()
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let text = read_text(cx, "parts")?.join(&self.sep);
        if let Some(name) = &self.pin {
            cx.pin(name.clone(), format!("pinned by stage {}", cx.stage_id()));
        }
        write_text(cx, &text)
    }
}

/// Numbers its input's lines into a Parquet table.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Table {
    /// Write the `line` column as text: the schema check must refuse it.
    pub wrong_schema: bool,
}

impl StageConfig for Table {
    const KIND: &'static str = "table";
    const VERSION: u32 = 1;
    const DOC: &'static str = "One row per input line.";
    fn inputs() -> &'static [InputSlot] {
        &[InputSlot { name: "input", kinds: &["text"], arity: Arity::One, doc: "The text." }]
    }
    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot { name: "rows", kind: "rows", doc: "Numbered lines." }]
    }
    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let text = read_text(cx, "input")?.concat();
        let lines: Vec<&str> = text.lines().collect();
        let numbers: ArrayRef = if self.wrong_schema {
            Arc::new(StringArray::from_iter_values((0..lines.len()).map(|i| i.to_string())))
        } else {
            Arc::new(Int64Array::from_iter_values(0..lines.len() as i64))
        };
        let batch = RecordBatch::try_from_iter_with_nullable(vec![
            ("line", numbers, false),
            ("text", Arc::new(StringArray::from_iter_values(lines.iter())) as ArrayRef, false),
        ])?;
        let file = std::fs::File::create(cx.output_table("rows"))?;
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
        w.write(&batch)?;
        w.close()?;
        cx.metric("rows", lines.len() as u64);
        Ok(())
    }
}
