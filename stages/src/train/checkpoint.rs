//! Checkpoints in the stage's work directory, which survives a killed run of the same cache key:
//! the LoRA variables, AdamW's moments, the data position and shuffle state, and the metrics so
//! far. Each lives in `checkpoints/step-NNNNNN/`, published by rewriting `checkpoints/latest`
//! atomically, so a kill at any point leaves the previous checkpoint intact.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::data::SplitMix64;
use super::optimizer::AdamW;
use crate::kinds::adapter::MetricRow;

/// Where training stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: usize,
    /// Passes over the training data begun.
    pub epoch: usize,
    /// Micro-batches of the current epoch consumed.
    pub cursor: usize,
    /// The shuffle generator, before the current epoch's permutation was drawn.
    pub rng: SplitMix64,
    /// Loss tokens trained on.
    pub tokens: u64,
    /// Seconds of training so far.
    pub elapsed_s: f64,
}

/// Everything needed to continue exactly where a run stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Progress.
    pub state: TrainState,
    /// `(name, shape, values)` of every trainable variable.
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Optimizer moments, in the order of `params`.
    pub optimizer: AdamW,
    /// Metrics recorded so far.
    pub metrics: Vec<MetricRow>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    state: TrainState,
    optimizer_step: u64,
    names: Vec<String>,
    metrics: Vec<MetricRow>,
}

type IoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn tensors(
    entries: impl Iterator<Item = (String, Vec<usize>, Vec<f32>)>,
) -> IoResult<HashMap<String, Tensor>> {
    entries.map(|(k, s, v)| Ok((k, Tensor::from_vec(v, s, &Device::Cpu)?))).collect()
}

impl Checkpoint {
    /// Writes the checkpoint under `root/checkpoints/` and points `latest` at it; older ones go.
    pub fn save(&self, root: &Path) -> IoResult<PathBuf> {
        let base = root.join("checkpoints");
        let name = format!("step-{:06}", self.state.step);
        let dir = base.join(&name);
        let tmp = base.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let p = &self.params;
        candle_core::safetensors::save(
            &tensors(p.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.clone())))?,
            tmp.join("params.safetensors"),
        )?;
        let moments = p.iter().zip(&self.optimizer.m).zip(&self.optimizer.v).flat_map(
            |(((n, s, _), m), v)| {
                [(format!("m.{n}"), s.clone(), m.clone()), (format!("v.{n}"), s.clone(), v.clone())]
            },
        );
        candle_core::safetensors::save(&tensors(moments)?, tmp.join("optimizer.safetensors"))?;
        let state = StateFile {
            state: self.state.clone(),
            optimizer_step: self.optimizer.step,
            names: p.iter().map(|(n, _, _)| n.clone()).collect(),
            metrics: self.metrics.clone(),
        };
        std::fs::write(tmp.join("state.json"), serde_json::to_vec(&state)?)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)?;
        let latest_tmp = base.join(".latest.tmp");
        std::fs::write(&latest_tmp, &name)?;
        std::fs::rename(&latest_tmp, base.join("latest"))?;
        for entry in std::fs::read_dir(&base)? {
            let entry = entry?;
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with("step-") && n != name {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(dir)
    }

    /// The checkpoint `latest` names under `root/checkpoints/`, if any.
    pub fn load(root: &Path) -> IoResult<Option<Self>> {
        let base = root.join("checkpoints");
        let Ok(name) = std::fs::read_to_string(base.join("latest")) else { return Ok(None) };
        let dir = base.join(name.trim());
        let state: StateFile = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?;
        let params = candle_core::safetensors::load(dir.join("params.safetensors"), &Device::Cpu)?;
        let moments =
            candle_core::safetensors::load(dir.join("optimizer.safetensors"), &Device::Cpu)?;
        let get = |map: &HashMap<String, Tensor>, k: &str| -> IoResult<(Vec<usize>, Vec<f32>)> {
            let t = map
                .get(k)
                .ok_or_else(|| format!("checkpoint {}: no tensor `{k}`", dir.display()))?;
            Ok((t.dims().to_vec(), t.flatten_all()?.to_vec1()?))
        };
        let mut out = Checkpoint {
            state: state.state,
            params: vec![],
            optimizer: AdamW::default(),
            metrics: state.metrics,
        };
        out.optimizer.step = state.optimizer_step;
        for n in &state.names {
            let (shape, v) = get(&params, n)?;
            out.params.push((n.clone(), shape, v));
            out.optimizer.m.push(get(&moments, &format!("m.{n}"))?.1);
            out.optimizer.v.push(get(&moments, &format!("v.{n}"))?.1);
        }
        Ok(Some(out))
    }
}
