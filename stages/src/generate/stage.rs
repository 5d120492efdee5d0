//! The run of a `generate` stage: every selected example is asked of every generator (through
//! the reply cache), and each answer becomes a row of `candidates`.

use std::collections::BTreeSet;
use std::time::Instant;

use medalign_engine::{RunContext, StageError};

use super::config::{CandidateSource, GenerateConfig};
use crate::kinds::adapter::{adapter_dir, TRAINED_EXAMPLES_FILE};
use crate::kinds::candidates::{write_candidates, Candidate};
use crate::kinds::examples::{prompt_of, read_examples, Example, Message};
use crate::llm::{Backends, ChatRequest, LocalAdapter, ReplyCache};

/// Runs a stage with params `cfg`.
pub fn run(cfg: &GenerateConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let mut rows = Vec::new();
    for input in cx.inputs("examples") {
        rows.extend(read_examples(&input.table())?);
    }
    if cfg.unseen {
        let Some(adapter) = cx.input("adapter") else {
            return Err(
                "unseen: needs the `adapter` input, whose training examples it leaves out".into()
            );
        };
        let file = adapter_dir(&adapter.dir).join(TRAINED_EXAMPLES_FILE);
        let trained = std::fs::read_to_string(&file).map_err(|e| {
            format!(
                "unseen: cannot read {} ({e}); only an SFT adapter lists its training examples",
                file.display()
            )
        })?;
        let trained: BTreeSet<&str> = trained.lines().collect();
        let before = rows.len();
        rows.retain(|e| !trained.contains(e.id.as_str()));
        cx.metric("prompts_seen_in_training", (before - rows.len()) as u64);
    }
    let examples = cfg.select(rows);
    let prompts: Vec<(Vec<Message>, Option<String>)> = examples.iter().map(prompt_of).collect();
    let cache = ReplyCache::new(cx.cache_dir("llm")?);
    let adapter =
        cx.input("adapter").map(|a| LocalAdapter { dir: adapter_dir(&a.dir), key: a.key.clone() });
    let mut backends = Backends::for_stage(cx.check_context(), adapter);
    let mut out: Vec<Candidate> = Vec::new();
    let (mut failed, mut tokens, started) = (0u64, 0u64, Instant::now());
    cx.progress().set_length((examples.len() * cfg.generators.len()) as u64);
    for g in &cfg.generators {
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
            .get(g.llm.as_ref().unwrap_or(&cfg.llm))
            .map_err(|e| format!("generator {:?}: {e}", g.name))?;
        let reqs: Vec<ChatRequest> =
            prompts.iter().map(|(t, r)| cfg.request(g, t, r.as_deref(), cx.seed())).collect();
        let progress = cx.progress();
        let replies = backend.complete_all(&reqs, &cache, &|n| progress.inc(n));
        if let Some(Err(first)) = replies.first().filter(|_| replies.iter().all(Result::is_err)) {
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
                max_tokens: Some(req.max_tokens as i64),
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
    for g in &cfg.generators {
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
