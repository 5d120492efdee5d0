//! The run of a `train` stage: reads conversations or pairs, tokenizes them with the model's chat
//! template, trains a LoRA adapter with the [`Trainer`], and writes the adapter in PEFT's format
//! with the resolved config, the metrics table and TensorBoard events.

use std::collections::HashMap;

use medalign_engine::{RunContext, StageError};
use medalign_model::LoraAdapter;

use super::config::{Method, TrainConfig};
use super::data::{is_held_out, pack, ChatTokenizer, PairSequence, Sequence};
use super::load::{base_spec, load_base, read_conversations, read_preference_pairs};
use super::metrics::write_events;
use super::reference::compute_reference;
use super::trainer::{Objective, Trainer};
use crate::kinds::adapter::{
    write_metrics, METRICS_FILE, TRAINED_EXAMPLES_FILE, TRAINING_CONFIG_FILE,
};
use crate::kinds::quantized_model::quantized_base_spec;
use crate::kinds::reference_logprobs::read_reference;
use crate::sample::spread_by;

/// Runs a train stage with params `cfg`.
pub fn run(cfg: &TrainConfig, cx: &mut RunContext<'_>) -> Result<(), StageError> {
    let data = cx.input("data").ok_or("no data input")?.clone();
    let base_dir = cx.input("base").map(|a| a.dir.clone());
    let spec = match &base_dir {
        Some(d) => quantized_base_spec(d)?,
        None => base_spec(&cfg.model, cx.check_context())?,
    };
    cx.progress().set_message("loading the model");
    let mut lm = load_base(&spec, cfg.quantized_base, base_dir.as_deref())?;
    let adapter = match cx.input("adapter") {
        Some(a) => LoraAdapter::load(&a.dir, &mut lm.model)?,
        None => LoraAdapter::init(&mut lm.model, cfg.lora.to_lora_config()?, cfg.seed)?,
    };
    let pad = lm.tokenizer.eos_id().unwrap_or(0);
    let tk = ChatTokenizer {
        tokenizer: &lm.tokenizer,
        template: &lm.chat_template,
        max_len: cfg.max_seq_len,
    };
    cx.progress().set_message("tokenizing");
    let mut trained_ids: Vec<String> = Vec::new();
    let (objective, batches) = match cfg.method {
        Method::Sft => {
            let (mut train, mut eval) = (Vec::<Sequence>::new(), Vec::new());
            let all = read_conversations(&data)?;
            let read = all.len();
            let kept =
                spread_by(all, |c| c.1.as_str(), |source| cfg.source_limits.get(source).copied());
            cx.metric("examples_unused", (read - kept.len()) as u64);
            for (id, _, messages) in kept {
                if let Some(s) = tk.sequence(&messages, cfg.loss_on)? {
                    if is_held_out(&id, cfg.eval_fraction, cfg.seed) {
                        eval.push(s)
                    } else {
                        train.push(s);
                        trained_ids.push(id);
                    }
                }
            }
            let refs: Vec<&Sequence> = train.iter().collect();
            let batches = pack(&refs, cfg.max_seq_len, cfg.packing).len().div_ceil(cfg.batch_size);
            (Objective::Sft { train, eval }, batches)
        }
        Method::Dpo => {
            let (mut train, mut eval) = (Vec::<PairSequence>::new(), Vec::new());
            for (id, prompt, chosen, rejected) in read_preference_pairs(&data)? {
                if let Some(p) = tk.pair(&id, &prompt, &chosen, &rejected)? {
                    if is_held_out(&id, cfg.eval_fraction, cfg.seed) {
                        eval.push(p)
                    } else {
                        train.push(p)
                    }
                }
            }
            let reference: HashMap<_, _> = match cx.input("reference") {
                Some(r) => read_reference(&r.table())?,
                None => {
                    cx.progress().set_message("reference log-probabilities");
                    let all: Vec<PairSequence> = train.iter().chain(&eval).cloned().collect();
                    compute_reference(&lm.model, &all, cfg.batch_size, pad, cfg.precision.bf16())?
                        .into_iter()
                        .collect()
                }
            };
            for p in train.iter().chain(&eval) {
                match reference.get(&p.id) {
                    Some(r) if r.chosen_tokens == p.chosen.targets() && r.rejected_tokens == p.rejected.targets() => {}
                    Some(_) => return Err(format!("reference log-probabilities of pair {} were computed with another model or max_seq_len", p.id).into()),
                    None => return Err(format!("no reference log-probabilities for pair {}", p.id).into()),
                }
            }
            let batches = train.len().div_ceil(cfg.batch_size);
            (Objective::Dpo { train, eval, reference, params: cfg.dpo }, batches)
        }
    };
    let total_steps = cfg.total_steps(batches);
    let progress = cx.progress();
    progress.set_length(total_steps as u64);
    if cfg.gradient_checkpointing {
        lm.model.enable_gradient_checkpointing();
    }
    let trainer = Trainer {
        model: &lm.model,
        adapter: &adapter,
        params: cfg,
        total_steps,
        pad_id: pad,
        objective,
        work_dir: cx.work_dir().to_path_buf(),
    };
    let metrics = trainer.run(&mut |r| {
        progress.inc(1);
        progress
            .set_message(format!("loss {:.4} lr {:.2e} {:.0} tok/s", r.loss, r.lr, r.tokens_per_s));
        true
    })?;
    let out = cx.output_dir("adapter").to_path_buf();
    adapter.save(&out, &spec)?;
    let resolved = serde_json::json!({
        "params": cfg,
        "base_model": spec,
        "total_steps": total_steps,
        "warmup_steps": cfg.warmup(total_steps),
        "lora": adapter.config().to_peft_json(&spec),
    });
    std::fs::write(out.join(TRAINING_CONFIG_FILE), serde_json::to_vec_pretty(&resolved)?)?;
    if cfg.method == Method::Sft {
        trained_ids.sort();
        trained_ids.dedup();
        let lines: String = trained_ids.iter().map(|id| format!("{id}\n")).collect();
        std::fs::write(out.join(TRAINED_EXAMPLES_FILE), lines)?;
    }
    // Losses and timings are a record of this run, not part of the adapter: a rerun that trains
    // the same weights must leave dpo, eval and register cached.
    let record = cx.run_record_dir("adapter")?;
    write_metrics(&record.join(METRICS_FILE), &metrics)?;
    write_events(&record.join("tensorboard"), &metrics)?;
    for tag in [
        "train/loss",
        "eval/loss",
        "eval/rewards_margin",
        "eval/rewards_accuracy",
        "train/tokens_per_s",
    ] {
        if let Some(last) = metrics.iter().rev().find(|m| m.tag == tag) {
            cx.metric(tag.replace('/', "_"), last.value);
        }
    }
    // Throughput over the whole run: every token read (prompts too), and the padding share.
    let mean = |tag: &str| {
        let v: Vec<f64> = metrics.iter().filter(|m| m.tag == tag).map(|m| m.value).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    if let Some(v) = mean("train/seq_tokens_per_s") {
        cx.metric("seq_tokens_per_s", (v * 10.0).round() / 10.0);
    }
    // What `precision: auto` chose on this CPU (1: bf16 products, 0: f32).
    cx.metric("bf16_products", f64::from(u8::from(cfg.precision.bf16())));
    if let Some(v) = mean("train/padding") {
        cx.metric("padding", (v * 1000.0).round() / 1000.0);
    }
    if let Some(first) = metrics.iter().find(|m| m.tag == "eval/loss") {
        cx.metric("eval_loss_before", first.value);
    }
    Ok(())
}
