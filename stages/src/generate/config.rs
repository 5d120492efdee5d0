//! Params of the `generate` stage kind and how it runs: every selected example is asked of every
//! generator (through the reply cache), and each answer becomes a row of `candidates`.

use std::collections::BTreeSet;
use std::time::Instant;

use medalign_engine::{
    Arity, CheckContext, InputSlot, OutputSlot, ParamError, RunContext, StageConfig, StageError,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::generate::prompt::reference_system;
use crate::kinds::adapter::{adapter_dir, ADAPTER};
use crate::kinds::candidates::{write_candidates, Candidate, CANDIDATES};
use crate::kinds::examples::{prompt_of, read_examples, Example, Message, Task, EXAMPLES};
use crate::llm::{
    BackendConfig, Backends, ChatRequest, LocalAdapter, ReplyCache, ReplyFormat, Sampling,
};
use crate::sample::spread_by;

/// Where a generator's answers come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CandidateSource {
    /// Ask the model (`llm`).
    #[default]
    Model,
    /// The dataset's reference answer (examples without one get no candidate).
    Reference,
    /// The dataset's rejected reply of a preference example.
    Rejected,
}

/// One named generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GeneratorConfig {
    /// Its name in `candidates` and `pairs`, e.g. `high`.
    pub name: String,
    /// `model` (default), `reference` or `rejected`.
    #[serde(default)]
    pub source: CandidateSource,
    /// This generator's LLM, when not the stage's `llm`.
    #[serde(default)]
    pub llm: Option<BackendConfig>,
    /// Sampling temperature (0 is greedy).
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Token budget, when not the stage's `max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Show the model the reference answer in a system turn (the "high" setting).
    #[serde(default)]
    pub with_reference: bool,
}

/// Params of the `generate` stage kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GenerateConfig {
    /// The generators; each adds one candidate per prompt.
    pub generators: Vec<GeneratorConfig>,
    /// The LLM of every `model` generator without its own `llm`.
    #[serde(default)]
    pub llm: BackendConfig,
    /// Only examples of these tasks get candidates.
    #[serde(default = "default_tasks")]
    pub tasks: Vec<String>,
    /// At most this many prompts: the first ones, in input order, after the task filter.
    #[serde(default)]
    pub limit: Option<usize>,
    /// At most this many prompts of each task, spread evenly over that task's rows in input order
    /// (every k-th), so a sample covers every source and category; applied before `limit`.
    #[serde(default)]
    pub per_task: Option<usize>,
    /// At most this many prompts of a source (ingest's source name, e.g. `{medquad: 64}`), evenly
    /// spread over its rows; applied before `per_task`, so a source left out keeps all its rows.
    #[serde(default)]
    pub source_limits: std::collections::BTreeMap<String, usize>,
    /// Token budget of each answer.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// A system turn put before every prompt.
    #[serde(default)]
    pub system: Option<String>,
}

fn default_tasks() -> Vec<String> {
    ["instruction", "dialogue", "safety", "preference"].map(String::from).to_vec()
}
fn default_max_tokens() -> u32 {
    192
}

impl GenerateConfig {
    /// The examples that get candidates.
    pub fn select(&self, rows: Vec<Example>) -> Vec<Example> {
        let keep: BTreeSet<&str> = self.tasks.iter().map(String::as_str).collect();
        let rows: Vec<Example> =
            rows.into_iter().filter(|e| keep.contains(e.task.as_str())).collect();
        let rows = spread_by(
            rows,
            |e| e.source.as_str(),
            |source| self.source_limits.get(source).copied(),
        );
        let rows = match self.per_task {
            Some(n) => spread_by(rows, |e| e.task.as_str(), |_| Some(n)),
            None => rows,
        };
        rows.into_iter().take(self.limit.unwrap_or(usize::MAX)).collect()
    }

    /// The request generator `g` makes for an example with these prompt turns and reference.
    fn request(
        &self,
        g: &GeneratorConfig,
        turns: &[Message],
        reference: Option<&str>,
        seed: u64,
    ) -> ChatRequest {
        let mut messages = Vec::new();
        match (g.with_reference, reference) {
            (true, Some(r)) => messages.push(reference_system(self.system.as_deref(), r)),
            _ => messages.extend(self.system.as_ref().map(|s| Message::new("system", s.clone()))),
        }
        messages.extend(turns.iter().cloned());
        let sampling = Sampling {
            temperature: g.temperature,
            top_p: g.top_p,
            max_tokens: g.max_tokens.unwrap_or(self.max_tokens),
            seed,
        };
        ChatRequest { messages, sampling, format: ReplyFormat::Text }
    }
}

impl StageConfig for GenerateConfig {
    const KIND: &'static str = "generate";
    const VERSION: u32 = 1;
    const DOC: &'static str = "Asks each prompt of named generators (a local or OpenAI-compatible model at a temperature, \
        with or without the reference answer in context, or the dataset's own reference or rejected answer) and writes \
        every answer as a candidate. Answers are cached per request, so a rerun sends nothing already answered.";

    fn inputs() -> &'static [InputSlot] {
        &[
            InputSlot { name: "examples", kinds: &[EXAMPLES.name], arity: Arity::AtLeastOne, doc: "the prompts, in order" },
            InputSlot {
                name: "adapter",
                kinds: &[ADAPTER.name],
                arity: Arity::Optional,
                doc: "a LoRA adapter every local model generator applies (e.g. SFT's, to sample the tuned model's own answers)",
            },
        ]
    }

    fn outputs() -> &'static [OutputSlot] {
        &[OutputSlot {
            name: "candidates",
            kind: CANDIDATES.name,
            doc: "one row per prompt and generator",
        }]
    }

    fn check(&self, _cx: &CheckContext) -> Vec<ParamError> {
        let mut errors = self.llm.check("llm");
        if self.generators.is_empty() {
            errors.push(ParamError::new("generators", "give at least one generator"));
        }
        let mut names = BTreeSet::new();
        for (i, g) in self.generators.iter().enumerate() {
            let at = |f: &str| format!("generators[{i}].{f}");
            if g.name.trim().is_empty() || g.name.contains('#') {
                errors.push(ParamError::new(at("name"), "give a non-empty name without '#'"));
            } else if !names.insert(g.name.as_str()) {
                errors.push(ParamError::new(
                    at("name"),
                    format!("{:?} names two generators", g.name),
                ));
            }
            if !(0.0..=2.0).contains(&g.temperature) {
                errors.push(ParamError::new(
                    at("temperature"),
                    format!("expected 0 to 2, got {}", g.temperature),
                ));
            }
            if let Some(llm) = &g.llm {
                errors.extend(llm.check(&format!("generators[{i}].llm")));
            }
        }
        for (i, t) in self.tasks.iter().enumerate() {
            if Task::parse(t).is_none() {
                errors.push(ParamError::new(format!("tasks[{i}]"), format!("unknown task {t:?}")));
            }
        }
        errors
    }

    fn run(&self, cx: &mut RunContext<'_>) -> Result<(), StageError> {
        let mut rows = Vec::new();
        for input in cx.inputs("examples") {
            rows.extend(read_examples(&input.table())?);
        }
        let examples = self.select(rows);
        let prompts: Vec<(Vec<Message>, Option<String>)> = examples.iter().map(prompt_of).collect();
        let cache = ReplyCache::new(cx.cache_dir("llm")?);
        let adapter = cx
            .input("adapter")
            .map(|a| LocalAdapter { dir: adapter_dir(&a.dir), key: a.key.clone() });
        let mut backends = Backends::for_stage(cx.check_context(), adapter);
        let mut out: Vec<Candidate> = Vec::new();
        let (mut failed, mut tokens, started) = (0u64, 0u64, Instant::now());
        cx.progress().set_length((examples.len() * self.generators.len()) as u64);
        for g in &self.generators {
            cx.progress().set_message(format!("generator {}", g.name));
            let base = |e: &Example, turns: &[Message], reference: &Option<String>| Candidate {
                id: format!("{}#{}", e.id, g.name),
                prompt_id: e.id.clone(),
                source: e.source.clone(),
                task: e.task.clone(),
                messages: turns.to_vec(),
                reference: reference.clone(),
                generator: g.name.clone(),
                model: "dataset".into(),
                ..Default::default()
            };
            if g.source != CandidateSource::Model {
                for (e, (turns, reference)) in examples.iter().zip(&prompts) {
                    let text = if g.source == CandidateSource::Reference {
                        reference.clone()
                    } else {
                        e.rejected.clone()
                    };
                    out.extend(
                        text.map(|t| Candidate { response: Some(t), ..base(e, turns, reference) }),
                    );
                }
                cx.progress().inc(examples.len() as u64);
                continue;
            }
            let backend = backends
                .get(g.llm.as_ref().unwrap_or(&self.llm))
                .map_err(|e| format!("generator {:?}: {e}", g.name))?;
            let reqs: Vec<ChatRequest> =
                prompts.iter().map(|(t, r)| self.request(g, t, r.as_deref(), cx.seed())).collect();
            let progress = cx.progress();
            let replies = backend.complete_all(&reqs, &cache, &|n| progress.inc(n));
            if let Some(Err(first)) = replies.first().filter(|_| replies.iter().all(Result::is_err))
            {
                return Err(format!(
                    "generator {:?}: all {} requests failed; the first: {first}",
                    g.name,
                    replies.len()
                )
                .into());
            }
            for (((e, (turns, reference)), req), reply) in
                examples.iter().zip(&prompts).zip(&reqs).zip(replies)
            {
                let s = &req.sampling;
                let mut c = Candidate {
                    model: backend.identity(),
                    temperature: Some(s.temperature),
                    top_p: s.top_p,
                    max_tokens: Some(s.max_tokens as i64),
                    seed: Some(s.seed),
                    with_reference: g.with_reference && reference.is_some(),
                    ..base(e, turns, reference)
                };
                match reply {
                    Ok(r) => {
                        tokens += r.completion_tokens.unwrap_or(0);
                        c.response = Some(r.text);
                        c.prompt_tokens = r.prompt_tokens.map(|t| t as i64);
                        c.completion_tokens = r.completion_tokens.map(|t| t as i64);
                        c.finish_reason = r.finish_reason;
                    }
                    Err(err) => {
                        failed += 1;
                        c.error = Some(err.to_string());
                    }
                }
                out.push(c);
            }
        }
        write_candidates(&cx.output_table("candidates"), &out)?;
        let secs = started.elapsed().as_secs_f64();
        cx.metric("prompts", examples.len() as u64);
        cx.metric("candidates", out.len() as u64);
        cx.metric("failed", failed);
        for g in &self.generators {
            cx.metric(
                format!("candidates.{}", g.name),
                out.iter().filter(|c| c.generator == g.name && c.response.is_some()).count() as u64,
            );
        }
        cx.metric("cache_hits", cache.hits());
        cx.metric("requests_sent", cache.misses());
        cx.metric("completion_tokens", tokens);
        cx.metric("seconds", (secs * 100.0).round() / 100.0);
        Ok(())
    }
}
