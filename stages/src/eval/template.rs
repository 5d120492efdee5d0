//! The prompts of lm-evaluation-harness, byte for byte: which benchmark an example belongs to, its
//! `doc_to_text`, its choices and gold index, the description and the few-shot context.
//!
//! Prompts are rendered from the record as the source file had it (the `original` column), so that
//! whitespace the harness keeps is kept here too; rows without a recognizable original fall back
//! to their normalized fields with the MedQA (`mcq`) or PubMedQA (`yes_no_maybe`) template.

use serde_json::Value;

use crate::eval::data::EvalDataError;
use crate::kinds::examples::{Example, Task};

/// Between the prompt and a choice (`target_delimiter`).
pub const TARGET_DELIMITER: &str = " ";
/// Between few-shot examples (`fewshot_delimiter`).
pub const FEWSHOT_DELIMITER: &str = "\n\n";
/// The MMLU subjects of the medical group, as lm-evaluation-harness names them.
pub const MMLU_MEDICAL: [&str; 6] = [
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
];

/// Which harness task template renders an example.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Template {
    /// `mmlu_<subject>`: description line, `question.strip()`, options `A. ..`, `Answer:`.
    Mmlu {
        /// The subject with underscores (`college_medicine`).
        subject: String,
    },
    /// `medqa_4options`: `Question: ..\nA. ..\n..Answer:`.
    MedQa,
    /// `medmcqa`: `Question: ..\nChoices:\nA. ..\n..Answer:`.
    MedMcqa,
    /// `pubmedqa`: `Abstract: ..\nQuestion: ..\nAnswer:` with choices yes, no, maybe.
    PubMedQa,
}

impl Template {
    /// The harness task name, which is also the `task` column of the metrics.
    pub fn task_name(&self) -> String {
        match self {
            Template::Mmlu { subject } => format!("mmlu_{subject}"),
            Template::MedQa => "medqa_4options".into(),
            Template::MedMcqa => "medmcqa".into(),
            Template::PubMedQa => "pubmedqa".into(),
        }
    }

    /// The group the task is averaged into (MMLU medical subjects), if any.
    pub fn group(&self) -> Option<&'static str> {
        matches!(self, Template::Mmlu { subject } if MMLU_MEDICAL.contains(&subject.as_str()))
            .then_some("mmlu_medical")
    }

    /// The text before the few-shot examples (`description`).
    pub fn description(&self) -> String {
        match self {
            Template::Mmlu { subject } => {
                format!(
                    "The following are multiple choice questions (with answers) about {}.\n\n",
                    subject.replace('_', " ")
                )
            }
            _ => String::new(),
        }
    }
}

/// One example as the harness sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    /// The template.
    pub template: Template,
    /// `doc_to_text`.
    pub text: String,
    /// `doc_to_choice`: what is scored after [`TARGET_DELIMITER`] (letters, or yes/no/maybe).
    pub choices: Vec<String>,
    /// `doc_to_target`: the index of the gold choice.
    pub gold: usize,
    /// The option texts (for generative answer extraction); equal to `choices` for yes/no/maybe.
    pub options: Vec<String>,
}

impl Doc {
    /// The text of a solved few-shot example: prompt, delimiter, gold choice.
    pub fn solved(&self) -> String {
        format!("{}{TARGET_DELIMITER}{}", self.text, self.choices[self.gold])
    }

    /// The full context: description, `shots` solved examples each followed by the few-shot
    /// delimiter, then this prompt.
    pub fn context(&self, shots: &[&Doc]) -> String {
        let mut out = self.template.description();
        for s in shots {
            out.push_str(&s.solved());
            out.push_str(FEWSHOT_DELIMITER);
        }
        out.push_str(&self.text);
        out
    }
}

const LETTERS: [&str; 26] = [
    "A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "N", "O", "P", "Q", "R", "S",
    "T", "U", "V", "W", "X", "Y", "Z",
];

fn options_block(options: &[String]) -> String {
    options.iter().zip(LETTERS).map(|(o, l)| format!("{l}. {o}\n")).collect()
}

/// The gold index of an example: its answer letter among its choices, or yes/no/maybe.
fn gold(e: &Example, labels: &[String]) -> Result<usize, EvalDataError> {
    let answer = e.answer.as_deref().ok_or_else(|| EvalDataError::field(e, "answer", "missing"))?;
    labels.iter().position(|l| l.eq_ignore_ascii_case(answer.trim())).ok_or_else(|| {
        EvalDataError::field(
            e,
            "answer",
            format!("expected one of {}, got {answer:?}", labels.join(", ")),
        )
    })
}

fn letters(n: usize) -> Vec<String> {
    LETTERS[..n].iter().map(|s| s.to_string()).collect()
}

fn raw_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

/// The harness document of an example, or `None` when its task is not scored by likelihood.
pub fn doc(e: &Example) -> Result<Option<Doc>, EvalDataError> {
    let task = Task::parse(&e.task)
        .ok_or_else(|| EvalDataError::field(e, "task", format!("unknown task {:?}", e.task)))?;
    if !matches!(task, Task::Mcq | Task::YesNoMaybe) {
        return Ok(None);
    }
    let question = e.messages.iter().find(|m| m.role == "user").map(|m| m.content.clone());
    let question = question
        .ok_or_else(|| EvalDataError::field(e, "messages", "no user turn with the question"))?;
    if task == Task::YesNoMaybe {
        let choices: Vec<String> = ["yes", "no", "maybe"].map(String::from).to_vec();
        let (contexts, q) = pubmedqa_original(&e.original)
            .unwrap_or((e.context.clone().unwrap_or_default(), question));
        let text = format!("Abstract: {contexts}\nQuestion: {q}\nAnswer:");
        let gold = gold(e, &choices)?;
        return Ok(Some(Doc {
            template: Template::PubMedQa,
            text,
            options: choices.clone(),
            choices,
            gold,
        }));
    }
    if e.choices.len() < 2 || e.choices.len() > LETTERS.len() {
        return Err(EvalDataError::field(
            e,
            "choices",
            format!("expected 2 to 26 options, got {}", e.choices.len()),
        ));
    }
    let labels = letters(e.choices.len());
    let gold = gold(e, &labels)?;
    let original: Value = serde_json::from_str(&e.original).unwrap_or(Value::Null);
    let (template, text, options) = if let Some((q, opts)) = mmlu_original(&original) {
        let subject = e.subject.clone().unwrap_or_else(|| "medicine".into());
        let text = format!("{}\n{}Answer:", q.trim(), options_block(&opts));
        (Template::Mmlu { subject }, text, opts)
    } else if let Some((q, opts)) = medmcqa_original(&original) {
        (
            Template::MedMcqa,
            format!("Question: {q}\nChoices:\n{}Answer:", options_block(&opts)),
            opts,
        )
    } else {
        let (q, opts) = medqa_original(&original).unwrap_or_else(|| {
            let q = match &e.context {
                Some(c) => format!("{c}\n{question}"),
                None => question,
            };
            (q, e.choices.clone())
        });
        (Template::MedQa, format!("Question: {q}\n{}Answer:", options_block(&opts)), opts)
    };
    if options.len() != labels.len() {
        let msg =
            format!("original record has {} options, the row {}", options.len(), labels.len());
        return Err(EvalDataError::field(e, "choices", msg));
    }
    Ok(Some(Doc { template, text, choices: labels, gold, options }))
}

/// MMLU's CSV row as ingest keeps it: `[question, A, B, C, D, answer]`.
fn mmlu_original(v: &Value) -> Option<(String, Vec<String>)> {
    let fields = v.as_array()?;
    if fields.len() != 6 {
        return None;
    }
    let f: Vec<String> = fields.iter().map(raw_str).collect::<Option<_>>()?;
    Some((f[0].clone(), f[1..5].to_vec()))
}

/// MedMCQA's record: `question`, `opa`..`opd`.
fn medmcqa_original(v: &Value) -> Option<(String, Vec<String>)> {
    let q = raw_str(v.get("question")?)?;
    let opts = ["opa", "opb", "opc", "opd"]
        .iter()
        .map(|k| v.get(*k).and_then(raw_str))
        .collect::<Option<Vec<_>>>()?;
    Some((q, opts))
}

/// MedQA's record: `question`, `options: {A: .., ...}`.
fn medqa_original(v: &Value) -> Option<(String, Vec<String>)> {
    let q = raw_str(v.get("question")?)?;
    let opts = v.get("options")?.as_object()?.values().map(raw_str).collect::<Option<Vec<_>>>()?;
    Some((q, opts))
}

/// PubMedQA's `{PMID: {QUESTION, CONTEXTS}}`: the contexts joined by newlines, and the question.
fn pubmedqa_original(original: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(original).ok()?;
    let (_, rec) = v.as_object().filter(|m| m.len() == 1)?.iter().next()?;
    let contexts =
        rec.get("CONTEXTS")?.as_array()?.iter().map(raw_str).collect::<Option<Vec<_>>>()?;
    Some((contexts.join("\n"), raw_str(rec.get("QUESTION")?)?))
}
