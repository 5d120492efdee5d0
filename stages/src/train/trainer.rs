//! The training loop shared by the `train` stage and `medalign bench train`: micro-batches from a
//! seeded shuffle, gradient accumulation normalized by the true number of loss targets (SFT) or
//! pairs (DPO) of the whole step, global-norm clipping, AdamW on the host, checkpoints in the work
//! directory and resumption from the last one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Tensor, Var};
use medalign_model::layers::bf16_products;
use medalign_model::process::on_pool;
use medalign_model::{LoraAdapter, Model};

use super::batch::{row_logprobs, token_logprobs, Batch};
use super::checkpoint::{Checkpoint, TrainState};
use super::config::TrainConfig;
use super::data::{pack, PairSequence, Row, Sequence, SplitMix64};
use super::dpo::{dpo_losses, rewards, DpoParams};
use super::metrics::now;
use super::optimizer::{clip_grad_norm, learning_rate, AdamW};
use crate::kinds::adapter::MetricRow;
use crate::kinds::reference_logprobs::ReferenceLogprobs;

/// What to learn.
pub enum Objective {
    /// Next-token loss on masked tokens.
    Sft {
        /// Training sequences.
        train: Vec<Sequence>,
        /// Held-out sequences.
        eval: Vec<Sequence>,
    },
    /// A preference loss against fixed reference log-probabilities.
    Dpo {
        /// Training pairs.
        train: Vec<PairSequence>,
        /// Held-out pairs.
        eval: Vec<PairSequence>,
        /// Reference log-probabilities by pair id.
        reference: HashMap<String, ReferenceLogprobs>,
        /// Loss parameters.
        params: DpoParams,
    },
}

/// One finished optimizer step, as the progress bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Training loss of the step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Loss tokens per second over the run.
    pub tokens_per_s: f64,
}

/// A model with a LoRA adapter, an objective and a work directory for checkpoints.
pub struct Trainer<'a> {
    /// The network (LoRA attached).
    pub model: &'a Model,
    /// The trainable variables.
    pub adapter: &'a LoraAdapter,
    /// The train params (learning rate, schedule, AdamW, batch shape, checkpoints, seed,
    /// precision), as the manifest gives them.
    pub params: &'a TrainConfig,
    /// Optimizer steps in all ([`TrainConfig::total_steps`]).
    pub total_steps: usize,
    /// Padding token id.
    pub pad_id: u32,
    /// What to learn.
    pub objective: Objective,
    /// Where checkpoints go (and are resumed from).
    pub work_dir: PathBuf,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The micro-batches of one epoch, in shuffled order: rows, and pair ids for DPO.
fn epoch_batches(
    obj: &Objective,
    h: &TrainConfig,
    rng: SplitMix64,
) -> Vec<(Vec<Row>, Option<Vec<String>>)> {
    let mut rng = rng;
    match obj {
        Objective::Sft { train, .. } => {
            let order: Vec<&Sequence> =
                rng.permutation(train.len()).into_iter().map(|i| &train[i]).collect();
            pack(&order, h.max_seq_len, h.packing)
                .chunks(h.batch_size)
                .map(|c| (c.to_vec(), None))
                .collect()
        }
        Objective::Dpo { train, .. } => {
            let order = rng.permutation(train.len());
            order
                .chunks(h.batch_size)
                .map(|c| {
                    (
                        pair_rows(c.iter().map(|&i| &train[i])),
                        Some(c.iter().map(|&i| train[i].id.clone()).collect()),
                    )
                })
                .collect()
        }
    }
}

/// Chosen rows, then rejected rows.
fn pair_rows<'p>(pairs: impl Iterator<Item = &'p PairSequence> + Clone) -> Vec<Row> {
    let one = |s: &Sequence| {
        let mut r = Row::default();
        r.push(s);
        r
    };
    pairs.clone().map(|p| one(&p.chosen)).chain(pairs.map(|p| one(&p.rejected))).collect()
}

impl Trainer<'_> {
    fn vars(&self) -> Vec<(String, Var)> {
        self.adapter.named_vars()
    }

    /// Trains to `total_steps`, resuming from the work directory's checkpoint when there is one.
    /// `on_step` sees each step; returning `false` stops early (as a kill would, for tests).
    /// Returns every metric recorded, earlier runs' included.
    pub fn run(
        &self,
        on_step: &mut dyn FnMut(&StepReport) -> bool,
    ) -> Result<Vec<MetricRow>, Error> {
        let h = self.params;
        let vars = self.vars();
        let mut params: Vec<Vec<f32>> = vars
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all()?.to_vec1())
            .collect::<candle_core::Result<_>>()?;
        let shapes: Vec<Vec<usize>> = vars.iter().map(|(_, v)| v.dims().to_vec()).collect();
        let (mut state, mut opt, mut metrics) = match Checkpoint::load(&self.work_dir)? {
            Some(c) => {
                for (i, (name, _, values)) in c.params.iter().enumerate() {
                    if name != &vars[i].0 {
                        return Err(format!(
                            "checkpoint variable {name} does not match {}",
                            vars[i].0
                        )
                        .into());
                    }
                    params[i] = values.clone();
                    vars[i].1.set(&Tensor::from_vec(
                        values.clone(),
                        shapes[i].clone(),
                        vars[i].1.device(),
                    )?)?;
                }
                (c.state, c.optimizer, c.metrics)
            }
            None => {
                let state = TrainState {
                    step: 0,
                    epoch: 0,
                    cursor: 0,
                    rng: SplitMix64(h.seed),
                    tokens: 0,
                    elapsed_s: 0.0,
                };
                let mut metrics = vec![];
                bf16_products(h.precision.bf16(), || self.evaluate(0, &mut metrics))?;
                (state, AdamW::new(&params.iter().map(Vec::len).collect::<Vec<_>>()), metrics)
            }
        };
        let started = Instant::now();
        let elapsed_before = state.elapsed_s;
        let mut epoch = epoch_batches(&self.objective, h, state.rng);
        if epoch.is_empty() {
            return Err("no training batches: the training data is empty".into());
        }
        while state.step < self.total_steps {
            let step_started = Instant::now();
            // Tokens the step reads (prompts included) and the padded cells it computes.
            let (mut seen, mut cells) = (0usize, 0usize);
            let mut micro = Vec::with_capacity(h.grad_accum);
            for _ in 0..h.grad_accum {
                if state.cursor >= epoch.len() {
                    let mut r = state.rng;
                    state.rng = SplitMix64(r.next_u64());
                    state.epoch += 1;
                    state.cursor = 0;
                    epoch = epoch_batches(&self.objective, h, state.rng);
                }
                let (rows, ids) = &epoch[state.cursor];
                seen += rows.iter().map(|r| r.ids.len()).sum::<usize>();
                cells += rows.len() * rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
                let mut b = Batch::new(rows, self.pad_id, self.model.device())?;
                b.pair_ids = ids.clone();
                micro.push(b);
                state.cursor += 1;
            }
            let (loss, mut grads, tokens, extra) =
                on_pool(|| bf16_products(h.precision.bf16(), || self.gradients(&micro, &vars)))?;
            let norm = clip_grad_norm(&mut grads, h.max_grad_norm);
            let lr = learning_rate(
                h.lr,
                h.schedule,
                state.step,
                h.warmup(self.total_steps),
                self.total_steps,
            );
            opt.update(&mut params, &grads, lr, &h.adamw());
            for (i, (_, v)) in vars.iter().enumerate() {
                v.set(&Tensor::from_vec(params[i].clone(), shapes[i].clone(), v.device())?)?;
            }
            state.step += 1;
            state.tokens += tokens as u64;
            state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
            let tps = state.tokens as f64 / state.elapsed_s.max(1e-9);
            let t = now();
            let mut put = |tag: &str, value: f64| {
                metrics.push(MetricRow {
                    step: state.step as u64,
                    tag: tag.into(),
                    value,
                    wall_time: t,
                })
            };
            for (tag, value) in [
                ("train/loss", loss),
                ("train/lr", lr),
                ("train/grad_norm", norm),
                ("train/tokens", state.tokens as f64),
                ("train/tokens_per_s", tps),
                ("train/elapsed_s", state.elapsed_s),
            ] {
                put(tag, value);
            }
            put(
                "train/seq_tokens_per_s",
                seen as f64 / step_started.elapsed().as_secs_f64().max(1e-9),
            );
            put("train/padding", 1.0 - seen as f64 / cells.max(1) as f64);
            extra.into_iter().for_each(|(tag, v)| put(&tag, v));
            let last = state.step == self.total_steps;
            if last || (h.eval_every > 0 && state.step % h.eval_every == 0) {
                bf16_products(h.precision.bf16(), || self.evaluate(state.step, &mut metrics))?;
            }
            if h.checkpoint_every > 0 && (state.step % h.checkpoint_every == 0 || last) {
                let named = vars
                    .iter()
                    .zip(&shapes)
                    .zip(&params)
                    .map(|(((n, _), s), p)| (n.clone(), s.clone(), p.clone()))
                    .collect();
                Checkpoint {
                    state: state.clone(),
                    params: named,
                    optimizer: opt.clone(),
                    metrics: metrics.clone(),
                }
                .save(&self.work_dir)?;
            }
            let report = StepReport {
                step: state.step,
                total: self.total_steps,
                loss,
                lr,
                tokens_per_s: tps,
            };
            if !on_step(&report) {
                break;
            }
        }
        Ok(metrics)
    }

    /// Loss, clipped-later gradients, loss tokens and extra metrics of one optimizer step.
    #[allow(clippy::type_complexity)]
    fn gradients(
        &self,
        micro: &[Batch],
        vars: &[(String, Var)],
    ) -> Result<(f64, Vec<Vec<f32>>, usize, Vec<(String, f64)>), Error> {
        let mut grads: Vec<Vec<f32>> =
            vars.iter().map(|(_, v)| vec![0f32; v.elem_count()]).collect();
        let tokens: usize = micro.iter().map(Batch::targets).sum();
        let (mut loss, mut extra) = (0f64, Vec::new());
        let (mut chosen_r, mut rejected_r) = (vec![], vec![]);
        for b in micro {
            let l = match &self.objective {
                Objective::Sft { .. } => {
                    (token_logprobs(self.model, b)?.sum_all()?.neg()? / tokens.max(1) as f64)?
                }
                Objective::Dpo { reference, params, .. } => {
                    let pairs_total: usize = micro.iter().map(|m| m.rows / 2).sum();
                    let (pc, pr, rc, rr) = self.dpo_terms(b, reference, params)?;
                    let (c, r) = rewards(&pc, &pr, &rc, &rr, params.beta)?;
                    chosen_r.extend(c);
                    rejected_r.extend(r);
                    (dpo_losses(&pc, &pr, &rc, &rr, params)?.sum_all()? / pairs_total as f64)?
                }
            };
            loss += l.to_scalar::<f32>()? as f64;
            let store = l.backward()?;
            // Checkpointed layers hand their LoRA gradients over on the side.
            let side = self.model.checkpoint_grads();
            for ((_, v), g) in vars.iter().zip(&mut grads) {
                for t in store
                    .get(v.as_tensor())
                    .cloned()
                    .into_iter()
                    .chain(side.and_then(|s| s.take(v)))
                {
                    g.iter_mut().zip(t.flatten_all()?.to_vec1::<f32>()?).for_each(|(a, b)| *a += b);
                }
            }
        }
        if !chosen_r.is_empty() {
            extra = reward_metrics("train", &chosen_r, &rejected_r);
        }
        Ok((loss, grads, tokens, extra))
    }

    /// Policy and reference log-probabilities `(pairs,)` of a DPO micro-batch.
    fn dpo_terms(
        &self,
        b: &Batch,
        reference: &HashMap<String, ReferenceLogprobs>,
        p: &DpoParams,
    ) -> Result<(Tensor, Tensor, Tensor, Tensor), Error> {
        let avg = p.loss.averages_logprobs();
        let n = b.rows / 2;
        let lp = row_logprobs(self.model, b, avg)?;
        let ids = b.pair_ids.as_ref().ok_or("a DPO batch without pair ids")?;
        let mut rc = Vec::with_capacity(n);
        let mut rr = Vec::with_capacity(n);
        for id in ids {
            let r = reference
                .get(id)
                .ok_or_else(|| format!("no reference log-probabilities for pair {id}"))?;
            let (c, j) = if avg {
                (
                    r.chosen / r.chosen_tokens.max(1) as f64,
                    r.rejected / r.rejected_tokens.max(1) as f64,
                )
            } else {
                (r.chosen, r.rejected)
            };
            rc.push(c as f32);
            rr.push(j as f32);
        }
        let dev = self.model.device();
        Ok((lp.narrow(0, 0, n)?, lp.narrow(0, n, n)?, Tensor::new(rc, dev)?, Tensor::new(rr, dev)?))
    }

    /// Held-out loss (and DPO reward figures) at `step`, appended to `metrics`.
    fn evaluate(&self, step: usize, metrics: &mut Vec<MetricRow>) -> Result<(), Error> {
        let h = self.params;
        let t = now();
        let mut put = |tag: String, value: f64| {
            metrics.push(MetricRow { step: step as u64, tag, value, wall_time: t })
        };
        match &self.objective {
            Objective::Sft { eval, .. } if !eval.is_empty() => {
                let seqs: Vec<&Sequence> = eval.iter().collect();
                let (mut nll, mut n) = (0f64, 0usize);
                for rows in pack(&seqs, h.max_seq_len, h.packing).chunks(h.batch_size) {
                    let b = Batch::new(rows, self.pad_id, self.model.device())?;
                    nll -= token_logprobs(self.model, &b)?.sum_all()?.to_scalar::<f32>()? as f64;
                    n += b.targets();
                }
                put("eval/loss".into(), nll / n.max(1) as f64);
            }
            Objective::Dpo { eval, reference, params, .. } if !eval.is_empty() => {
                let (mut loss, mut c, mut r) = (0f64, vec![], vec![]);
                for chunk in eval.chunks(h.batch_size) {
                    let mut b =
                        Batch::new(&pair_rows(chunk.iter()), self.pad_id, self.model.device())?;
                    b.pair_ids = Some(chunk.iter().map(|p| p.id.clone()).collect());
                    let (pc, pr, rc, rr) = self.dpo_terms(&b, reference, params)?;
                    loss += dpo_losses(&pc, &pr, &rc, &rr, params)?.sum_all()?.to_scalar::<f32>()?
                        as f64;
                    let (a, b) = rewards(&pc, &pr, &rc, &rr, params.beta)?;
                    c.extend(a);
                    r.extend(b);
                }
                put("eval/loss".into(), loss / eval.len() as f64);
                reward_metrics("eval", &c, &r).into_iter().for_each(|(k, v)| put(k, v));
            }
            _ => {}
        }
        Ok(())
    }
}

/// TRL's reward figures: mean chosen and rejected rewards, their margin and how often chosen wins.
fn reward_metrics(prefix: &str, chosen: &[f32], rejected: &[f32]) -> Vec<(String, f64)> {
    let n = chosen.len().max(1) as f64;
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let wins = chosen.iter().zip(rejected).filter(|(c, r)| c > r).count() as f64;
    vec![
        (format!("{prefix}/rewards_chosen"), mean(chosen)),
        (format!("{prefix}/rewards_rejected"), mean(rejected)),
        (format!("{prefix}/rewards_margin"), mean(chosen) - mean(rejected)),
        (format!("{prefix}/rewards_accuracy"), wins / n),
    ]
}
