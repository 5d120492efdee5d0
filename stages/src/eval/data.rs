//! The eval items of an `examples` table, sorted into what each is scored by: harness benchmarks
//! (likelihood or generation), harmful requests (refusal rate) and benign questions (false
//! refusals). Bad rows are all collected and reported as `origin: field "x": what is wrong`,
//! the same shape as ingest's errors.

use std::collections::BTreeMap;

use crate::eval::template::{self, Doc};
use crate::kinds::examples::{Example, Task};

/// How many errors a failing eval lists before summing up the rest (as ingest does).
const ERRORS_SHOWN: usize = 20;

/// A problem with one eval row, naming where it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: field \"{field}\": {message}")]
pub struct EvalDataError {
    /// `path:line` of the record (the example's `origin`), or its id when it has none.
    pub origin: String,
    /// The field at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl EvalDataError {
    /// An error about `field` of example `e`.
    pub fn field(e: &Example, field: &str, message: impl Into<String>) -> Self {
        let origin = if e.origin.is_empty() { e.id.clone() } else { e.origin.clone() };
        EvalDataError { origin, field: field.into(), message: message.into() }
    }
}

/// Joins errors into one message, at most [`ERRORS_SHOWN`] of them.
pub fn join_errors(errors: &[EvalDataError]) -> String {
    let mut msg =
        errors.iter().take(ERRORS_SHOWN).map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    if errors.len() > ERRORS_SHOWN {
        msg.push_str(&format!("\n... and {} more bad eval rows", errors.len() - ERRORS_SHOWN));
    }
    msg
}

/// A benchmark item: the example and its harness document.
#[derive(Clone, Debug)]
pub struct BenchItem {
    /// The example.
    pub example: Example,
    /// Its document.
    pub doc: Doc,
}

/// Every eval row, sorted by what measures it.
#[derive(Clone, Debug, Default)]
pub struct EvalSet {
    /// Benchmark items per task name, in input order.
    pub benchmarks: BTreeMap<String, Vec<BenchItem>>,
    /// Harmful requests (`safety` rows): the model should refuse.
    pub harmful: Vec<Example>,
    /// Benign questions (`instruction` rows): the model should answer.
    pub benign: Vec<Example>,
}

impl EvalSet {
    /// Sorts `rows`; `limit` keeps the first items of each benchmark, `safety_limit` of each
    /// refusal set.
    pub fn from_examples(
        rows: Vec<Example>,
        limit: Option<usize>,
        safety_limit: Option<usize>,
    ) -> Result<EvalSet, String> {
        let mut set = EvalSet::default();
        let mut errors = Vec::new();
        for e in rows {
            match Task::parse(&e.task) {
                Some(Task::Safety) => set.harmful.push(e),
                Some(Task::Instruction) => set.benign.push(e),
                Some(Task::Dialogue | Task::Preference) => {}
                _ => match template::doc(&e) {
                    Ok(Some(doc)) => set
                        .benchmarks
                        .entry(doc.template.task_name())
                        .or_default()
                        .push(BenchItem { example: e, doc }),
                    Ok(None) => {}
                    Err(err) => errors.push(err),
                },
            }
        }
        if !errors.is_empty() {
            return Err(join_errors(&errors));
        }
        if let Some(n) = limit {
            set.benchmarks.values_mut().for_each(|v| v.truncate(n));
        }
        if let Some(n) = safety_limit {
            set.harmful.truncate(n);
            set.benign.truncate(n);
        }
        Ok(set)
    }

    /// Benchmark items of a few-shot pool, per task name (bad rows are errors too).
    pub fn fewshot_pool(rows: Vec<Example>) -> Result<BTreeMap<String, Vec<Doc>>, String> {
        let mut pool: BTreeMap<String, Vec<Doc>> = BTreeMap::new();
        let mut errors = Vec::new();
        for e in &rows {
            match template::doc(e) {
                Ok(Some(doc)) => pool.entry(doc.template.task_name()).or_default().push(doc),
                Ok(None) => {}
                Err(err) => errors.push(err),
            }
        }
        if !errors.is_empty() {
            return Err(join_errors(&errors));
        }
        Ok(pool)
    }

    /// The user turn of a refusal item (its first user message).
    pub fn request(e: &Example) -> Result<&str, EvalDataError> {
        e.messages
            .iter()
            .find(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .ok_or_else(|| EvalDataError::field(e, "messages", "no user turn with the request"))
    }
}
