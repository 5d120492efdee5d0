//! Micro-batches as tensors, and the per-token log-probabilities every objective starts from:
//! the vocabulary head runs only at positions whose next token carries loss.

use candle_core::{DType, Device, Tensor, D};
use medalign_model::Model;

use super::data::Row;

/// Rows made rectangular, with their attention mask and loss targets.
pub struct Batch {
    /// `(b, t)` token ids.
    pub ids: Tensor,
    /// `(b, 1, t, t)` additive mask: causal within a segment, nothing across.
    pub mask: Tensor,
    /// Flat indices `row * t + p` of the positions that predict a target.
    pub positions: Tensor,
    /// `(n, 1)` the target id at each of them.
    pub targets: Tensor,
    /// The same target ids on the host.
    pub target_ids: Vec<u32>,
    /// The row of each target.
    pub row_of: Vec<usize>,
    /// Number of rows.
    pub rows: usize,
    /// For DPO: the pair of each chosen row (rejected rows follow in the same order).
    pub pair_ids: Option<Vec<String>>,
}

impl Batch {
    /// Builds a batch from `rows`, padded to the longest with `pad_id`.
    pub fn new(rows: &[Row], pad_id: u32, device: &Device) -> candle_core::Result<Self> {
        let t = rows.iter().map(|r| r.ids.len()).max().unwrap_or(1).max(2);
        let mut ids = Vec::with_capacity(rows.len() * t);
        let mut mask = Vec::with_capacity(rows.len() * t * t);
        let (mut positions, mut targets, mut row_of) = (vec![], vec![], vec![]);
        for (b, row) in rows.iter().enumerate() {
            let mut row = row.clone();
            row.pad_to(t, pad_id);
            ids.extend_from_slice(&row.ids);
            for i in 0..t {
                for j in 0..t {
                    let visible = j <= i && row.segments[j] == row.segments[i];
                    mask.push(if visible { 0f32 } else { f32::NEG_INFINITY });
                }
            }
            for p in 0..t - 1 {
                if row.mask[p + 1] && row.segments[p + 1] == row.segments[p] {
                    positions.push((b * t + p) as u32);
                    targets.push(row.ids[p + 1]);
                    row_of.push(b);
                }
            }
        }
        let n = targets.len();
        Ok(Self {
            ids: Tensor::from_vec(ids, (rows.len(), t), device)?,
            mask: Tensor::from_vec(mask, (rows.len(), 1, t, t), device)?,
            positions: Tensor::from_vec(positions, n, device)?,
            targets: Tensor::from_vec(targets.clone(), (n, 1), device)?,
            target_ids: targets,
            row_of,
            rows: rows.len(),
            pair_ids: None,
        })
    }

    /// Number of loss targets.
    pub fn targets(&self) -> usize {
        self.row_of.len()
    }

    /// Targets per row.
    pub fn targets_per_row(&self) -> Vec<usize> {
        let mut c = vec![0; self.rows];
        self.row_of.iter().for_each(|&r| c[r] += 1);
        c
    }

    /// `(rows, n)` one-hot matrix mapping targets to their row, for per-row sums.
    pub fn row_matrix(&self) -> candle_core::Result<Tensor> {
        let n = self.targets();
        let mut m = vec![0f32; self.rows * n];
        for (k, &r) in self.row_of.iter().enumerate() {
            m[r * n + k] = 1.0;
        }
        Tensor::from_vec(m, (self.rows, n), self.ids.device())
    }
}

/// `log p(target)` at every target of `batch`, `(n,)`, differentiable through the LoRA variables.
/// The vocabulary head runs fused with the log-softmax, a block of rows at a time (see
/// [`medalign_model::fused_ce`]), unless it carries a LoRA update or a bias.
pub fn token_logprobs(model: &Model, batch: &Batch) -> medalign_model::Result<Tensor> {
    let hidden = model.forward_hidden_masked(&batch.ids, &batch.mask)?;
    let h = hidden.dim(D::Minus1)?;
    let picked = hidden.reshape(((), h))?.index_select(&batch.positions, 0)?;
    let head = model.lm_head_linear();
    let plain = head.bias().is_none() && (head.lora().is_none() || head.is_merged());
    if plain && picked.device().is_cpu() {
        return Ok(medalign_model::fused_ce::target_logprobs(
            &picked,
            head.weight(),
            &batch.target_ids,
        )?);
    }
    let logp = candle_nn::ops::log_softmax(&model.lm_head(&picked)?, D::Minus1)?;
    Ok(logp.gather(&batch.targets, 1)?.squeeze(1)?)
}

/// Summed log-probability of each row's targets, `(rows,)`; with `average`, divided by the row's
/// target count (what the IPO loss uses).
pub fn row_logprobs(model: &Model, batch: &Batch, average: bool) -> medalign_model::Result<Tensor> {
    let tok = token_logprobs(model, batch)?;
    let sums = batch.row_matrix()?.matmul(&tok.unsqueeze(1)?)?.squeeze(1)?;
    if !average {
        return Ok(sums);
    }
    let counts: Vec<f32> = batch.targets_per_row().iter().map(|&c| c.max(1) as f32).collect();
    Ok(sums.div(&Tensor::new(counts, sums.device())?.to_dtype(DType::F32)?)?)
}
