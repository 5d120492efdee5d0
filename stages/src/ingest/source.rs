//! One entry of ingest's `sources:` list: a file or folder, its format, and how to name its rows.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ingest::generic::FieldMap;
use crate::ingest::record::{FileError, FileInput, Parsed};
use crate::ingest::{
    alpaca, chat, generic, meddialog, medmcqa, medqa, medsafetybench, mmlu, preference, pubmedqa,
};
use crate::kinds::examples::Task;

/// The public formats ingest reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// MedQA US JSON lines (question, options A..D, answer, answer_idx, meta_info).
    Medqa,
    /// PubMedQA `ori_pqal.json` (PMID -> QUESTION, CONTEXTS, final_decision, LONG_ANSWER).
    Pubmedqa,
    /// MedMCQA JSON lines (question, opa..opd, cop 1..4, exp, subject_name, topic_name).
    Medmcqa,
    /// MedDialog English text blocks (id=, URL, Description, Dialogue, Patient:/Doctor: turns).
    Meddialog,
    /// MMLU CSV without header (question, A, B, C, D, letter); subject from the file name.
    Mmlu,
    /// OpenAI chat fine-tuning JSON lines (`{"messages": [...]}`).
    OpenaiChat,
    /// Alpaca JSON array (instruction, input, output).
    Alpaca,
    /// Preference JSON lines (prompt or messages, chosen, rejected).
    Preference,
    /// MedSafetyBench CSV (index, harmful_medical_request, safe_response).
    Medsafetybench,
    /// Any JSON lines, read through `fields:` with a `task:`.
    Jsonl,
    /// Any CSV with a header row, read through `fields:` with a `task:`.
    Csv,
}

impl Format {
    /// The `format:` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Medqa => "medqa",
            Format::Pubmedqa => "pubmedqa",
            Format::Medmcqa => "medmcqa",
            Format::Meddialog => "meddialog",
            Format::Mmlu => "mmlu",
            Format::OpenaiChat => "openai_chat",
            Format::Alpaca => "alpaca",
            Format::Preference => "preference",
            Format::Medsafetybench => "medsafetybench",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// File extensions read when `path` is a folder.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            Format::Medqa | Format::OpenaiChat | Format::Preference | Format::Jsonl => &["jsonl"],
            Format::Medmcqa => &["json", "jsonl"],
            Format::Pubmedqa | Format::Alpaca => &["json"],
            Format::Mmlu | Format::Medsafetybench | Format::Csv => &["csv"],
            Format::Meddialog => &["txt"],
        }
    }

    /// Whether the format needs `fields:` and `task:`.
    pub fn is_generic(self) -> bool {
        matches!(self, Format::Jsonl | Format::Csv)
    }
}

/// One source of records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Source {
    /// A file, or a folder whose files with the format's extension are all read (recursively, sorted).
    /// Relative to the manifest unless absolute.
    pub path: String,
    /// The file format.
    pub format: Format,
    /// The source name in the `source` column and in ids; by default the format name.
    #[serde(default)]
    pub name: Option<String>,
    /// The split to record on every row (overrides a split the format itself knows, such as MMLU's).
    #[serde(default)]
    pub split: Option<String>,
    /// The task of every row; required for `jsonl` and `csv`, not allowed otherwise.
    #[serde(default)]
    pub task: Option<Task>,
    /// For `jsonl` and `csv`: which record field fills which column.
    #[serde(default)]
    pub fields: Option<FieldMap>,
    /// For `jsonl` and `csv`: the rows are prompts without a reference reply (no `response`
    /// field), such as questions whose answers a dataset withheld. Training skips them; `generate`
    /// asks them, and `pair` keeps the model's own answers the rules accept.
    #[serde(default)]
    pub prompts_only: bool,
}

impl Source {
    /// The source name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.format.name())
    }

    /// The files to read, with the name each shows in origins (the param path, plus the file inside a
    /// folder) and the id prefix of its rows.
    pub fn files(&self, resolved: &Path) -> std::io::Result<Vec<SourceFile>> {
        if !resolved.is_dir() {
            return Ok(vec![SourceFile {
                path: resolved.to_path_buf(),
                display: self.path.clone(),
                prefix: self.name().to_string(),
            }]);
        }
        let mut found = Vec::new();
        walk(resolved, self.format.extensions(), &mut found)?;
        found.sort();
        Ok(found
            .into_iter()
            .map(|path| {
                let rel = path
                    .strip_prefix(resolved)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                let stem = rel.rsplit_once('.').map_or(rel.as_str(), |(s, _)| s).to_string();
                let display = format!("{}/{rel}", self.path.trim_end_matches('/'));
                SourceFile { path, display, prefix: format!("{}:{stem}", self.name()) }
            })
            .collect())
    }

    /// Parses one file's text in this source's format.
    pub fn parse(&self, input: &FileInput<'_>) -> Result<Vec<Parsed>, FileError> {
        let task = self.task.unwrap_or(Task::Instruction);
        let fields = self.fields.clone().unwrap_or_default();
        Ok(match self.format {
            Format::Medqa => medqa::parse(input),
            Format::Pubmedqa => pubmedqa::parse(input)?,
            Format::Medmcqa => medmcqa::parse(input),
            Format::Meddialog => meddialog::parse(input),
            Format::Mmlu => mmlu::parse(input)?,
            Format::OpenaiChat => chat::parse(input),
            Format::Alpaca => alpaca::parse(input)?,
            Format::Preference => preference::parse(input),
            Format::Medsafetybench => medsafetybench::parse(input)?,
            Format::Jsonl => generic::parse_jsonl(input, &fields, task, self.prompts_only),
            Format::Csv => generic::parse_csv(input, &fields, task, self.prompts_only)?,
        })
    }
}

/// One file of a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Where it is.
    pub path: PathBuf,
    /// How origins and errors name it.
    pub display: String,
    /// The id prefix of its rows: the source name, plus the file's path inside a folder source.
    pub prefix: String,
}

fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, exts, out)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| exts.contains(&e)) {
            out.push(path);
        }
    }
    Ok(())
}
