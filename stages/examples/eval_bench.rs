//! Scores MMLU medical val and the PubMedQA pool the way the eval stage does, and writes per-item
//! predictions and questions/s in the format `stages/scripts/eval_vs_harness.py compare` reads.
//!
//! ```text
//! cargo run --release -p medalign-stages --example eval_bench -- \
//!     --data ../shared/data --model smollm2-135m-instruct --precision f32 --out /tmp/medalign.json
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use medalign_model::{LanguageModel, LinearFormat, LoadOptions};
use medalign_stages::eval::data::EvalSet;
use medalign_stages::eval::runner::{benchmarks, Settings};
use medalign_stages::ingest::IngestConfig;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
    };
    let data = arg("--data", "../shared/data");
    let format = if arg("--precision", "f32") == "quantized" { LinearFormat::Quantized } else { LinearFormat::F32 };
    let sources = serde_json::json!({ "sources": [
        { "path": format!("{data}/mmlu_medical/val"), "format": "mmlu" },
        { "path": format!("{data}/pubmedqa/pqal_train_pool.json"), "format": "pubmedqa" },
    ]});
    let cfg: IngestConfig = serde_json::from_value(sources)?;
    let rows = cfg.ingest(|p| std::path::PathBuf::from(p))?.examples;
    let limit = arg("--limit", "").parse().ok();
    let set = EvalSet::from_examples(rows, limit, None)?;
    let load = Instant::now();
    let lm = LanguageModel::load(&arg("--model", "smollm2-135m-instruct"), &LoadOptions { format, ..LoadOptions::inference() })?;
    let load_s = load.elapsed().as_secs_f64();
    let settings = Settings {
        loglikelihood: true,
        generative: false,
        num_fewshot: 0,
        batch_tokens: arg("--batch-tokens", "4096").parse()?,
        generation_batch: 8,
        answer_tokens: 16,
        reply_tokens: 64,
    };
    let (preds, rate) = benchmarks(&lm, "base", &set, &BTreeMap::new(), &settings, &mut |m| eprintln!("{m}"))?;
    let mut out = serde_json::Map::new();
    for (task, items) in &set.benchmarks {
        let mine: Vec<_> = preds.iter().filter(|p| &p.task == task).collect();
        let index = |v: &Option<String>| items[0].doc.choices.iter().position(|c| Some(c) == v.as_ref());
        let preds: Vec<Option<usize>> = mine.iter().map(|p| index(&p.pred)).collect();
        let gold: Vec<usize> = items.iter().map(|i| i.doc.gold).collect();
        let acc = mine.iter().filter(|p| p.correct).count() as f64 / mine.len() as f64;
        out.insert(task.clone(), serde_json::json!({ "preds": preds, "gold": gold, "acc": acc }));
    }
    out.insert("questions_per_s".into(), rate.unwrap_or(0.0).into());
    out.insert("load_seconds".into(), load_s.into());
    std::fs::write(arg("--out", "/tmp/medalign_eval.json"), serde_json::to_string(&out)?)?;
    eprintln!("{} questions, {:.2} questions/s (model load {load_s:.1}s)", preds.len(), rate.unwrap_or(0.0));
    Ok(())
}
