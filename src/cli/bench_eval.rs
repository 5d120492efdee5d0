//! `medalign bench eval`: benchmark questions scored per second by log-likelihood, the way the eval
//! stage scores them, with per-item predictions for comparison with lm-evaluation-harness
//! (`stages/scripts/eval_vs_harness.py compare`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use medalign_model::layers::bf16_products;
use medalign_model::LoadOptions;
use medalign_stages::eval::config::Precision;
use medalign_stages::eval::data::EvalSet;
use medalign_stages::eval::runner::{benchmarks, Settings};
use medalign_stages::ingest::IngestConfig;

use super::print_json;

/// Eval benchmark options.
#[derive(Args, Debug)]
pub struct BenchEvalArgs {
    /// A registered model (`medalign@latest`, `medalign:3`), a .gguf file, a safetensors
    /// directory, or a known name.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// The store whose model registry names like `medalign@latest` resolve in.
    #[arg(long, env = "MEDALIGN_STORE", default_value = medalign_registry::DEFAULT_STORE)]
    store: PathBuf,
    /// MMLU CSV file or folder (subject from each file name).
    #[arg(long, default_value = "data/mmlu")]
    mmlu: PathBuf,
    /// PubMedQA ori_pqal.json.
    #[arg(long, default_value = "data/pubmedqa_ori_pqal.json")]
    pubmedqa: PathBuf,
    /// Items per benchmark.
    #[arg(long)]
    limit: Option<usize>,
    /// `bf16` (f32 weights, bfloat16 products: the eval stage's default), exact `f32` (what
    /// transformers computes) or `quantized`.
    #[arg(long, value_enum, default_value_t = Precision::Bf16)]
    precision: Precision,
    /// Padded tokens per forward pass.
    #[arg(long, default_value_t = medalign_stages::eval::config::DEFAULT_BATCH_TOKENS)]
    batch_tokens: usize,
    /// Also write per-item predictions to this JSON file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the figures as JSON on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub fn bench_eval(a: BenchEvalArgs) -> anyhow::Result<()> {
    let sources = serde_json::json!({ "sources": [
        { "path": a.mmlu, "format": "mmlu" },
        { "path": a.pubmedqa, "format": "pubmedqa" },
    ]});
    let cfg: IngestConfig = serde_json::from_value(sources)?;
    let rows = cfg.ingest(|p: &str| PathBuf::from(p)).map_err(|e| anyhow::anyhow!("{e}"))?.examples;
    let set = EvalSet::from_examples(rows, a.limit, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let load = Instant::now();
    let source = medalign_registry::resolve(&a.model, std::path::Path::new("."), &a.store)?;
    let lm =
        source.load(&LoadOptions { format: a.precision.format(), ..LoadOptions::inference() })?;
    let load_seconds = load.elapsed().as_secs_f64();
    let settings = Settings {
        loglikelihood: true,
        generative: false,
        num_fewshot: 0,
        batch_tokens: a.batch_tokens,
        generation_batch: 8,
        answer_tokens: 16,
        reply_tokens: 64,
    };
    let (preds, rate) = bf16_products(a.precision.bf16(), || {
        benchmarks(&lm, "base", &set, &BTreeMap::new(), &settings, &mut |m| eprintln!("{m}"))
    })
    .map_err(anyhow::Error::msg)?;
    let mut tasks = serde_json::Map::new();
    for (task, items) in &set.benchmarks {
        let mine: Vec<_> = preds.iter().filter(|p| &p.task == task).collect();
        let index =
            |v: &Option<String>| items[0].doc.choices.iter().position(|c| Some(c) == v.as_ref());
        let chosen: Vec<Option<usize>> = mine.iter().map(|p| index(&p.pred)).collect();
        let gold: Vec<usize> = items.iter().map(|i| i.doc.gold).collect();
        let acc = mine.iter().filter(|p| p.correct).count() as f64 / mine.len().max(1) as f64;
        tasks
            .insert(task.clone(), serde_json::json!({ "preds": chosen, "gold": gold, "acc": acc }));
    }
    let questions_per_s = rate.unwrap_or(0.0);
    if let Some(out) = &a.out {
        let mut all = tasks.clone();
        all.insert("questions_per_s".into(), questions_per_s.into());
        all.insert("load_seconds".into(), load_seconds.into());
        std::fs::write(out, serde_json::to_string(&all)?)?;
    }
    if a.json {
        print_json(
            &serde_json::json!({ "questions": preds.len(), "questions_per_s": questions_per_s, "load_seconds": load_seconds }),
        )?;
    }
    eprintln!(
        "{} questions, {questions_per_s:.2} questions/s (model load {load_seconds:.1}s)",
        preds.len()
    );
    Ok(())
}
