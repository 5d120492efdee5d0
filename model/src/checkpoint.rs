//! Gradient checkpointing (Chen et al. 2016, <https://arxiv.org/abs/1604.06174>): a decoder layer
//! runs forward without keeping its activations, and its backward runs it again, this time with a
//! graph, to get the input gradient and its LoRA gradients. Training memory then holds one layer's
//! activations instead of all of them, for about one more forward pass of compute.
//!
//! candle has no `no_grad` mode and a custom op's backward can only return its input's gradient,
//! so two pieces make this work: [`no_grad`] makes LoRA layers read their variables detached, and
//! [`CheckpointGrads`] collects the parameter gradients the recomputations find, for the trainer
//! to add to those of the outer backward.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, TensorId, Var};

use crate::precomputed::Precomputed;
use crate::Result;

thread_local! {
    static NO_GRAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside [`no_grad`].
pub fn grad_disabled() -> bool {
    NO_GRAD.with(Cell::get)
}

/// Runs `f` with trainable variables read as constants: nothing it computes builds a graph.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    let before = NO_GRAD.with(|g| g.replace(true));
    let out = f();
    NO_GRAD.with(|g| g.set(before));
    out
}

/// Parameter gradients found by checkpointed layers' backward passes, summed per variable.
#[derive(Debug, Default)]
pub struct CheckpointGrads {
    grads: Mutex<HashMap<TensorId, Tensor>>,
}

impl CheckpointGrads {
    fn add(&self, id: TensorId, g: Tensor) -> candle_core::Result<()> {
        let mut map = self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("checkpoint gradients poisoned".into()))?;
        let sum = match map.remove(&id) {
            Some(prev) => (prev + g)?,
            None => g,
        };
        map.insert(id, sum);
        Ok(())
    }

    /// Takes (and forgets) the gradient collected for `var`, if any.
    pub fn take(&self, var: &Var) -> Option<Tensor> {
        self.grads.lock().ok()?.remove(&var.as_tensor().id())
    }
}

/// The function a checkpoint recomputes.
pub type Recompute = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

struct Checkpoint {
    f: Recompute,
    params: Vec<Var>,
    grads: Arc<CheckpointGrads>,
    out: Precomputed,
}

impl CustomOp1 for Checkpoint {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn cpu_fwd(&self, _s: &CpuStorage, _l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.take()
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let x = Var::from_tensor(&arg.detach())?;
        let y = (self.f)(x.as_tensor()).map_err(candle_core::Error::wrap)?;
        let store = (y * grad.detach())?.sum_all()?.backward()?;
        for p in &self.params {
            if let Some(g) = store.get(p.as_tensor()) {
                self.grads.add(p.as_tensor().id(), g.clone())?;
            }
        }
        Ok(store.get(x.as_tensor()).cloned())
    }
}

/// `f(x)` computed without a graph, whose backward recomputes `f` to pass the gradient on to `x`
/// and to collect the gradients of `params` (the variables `f` reads) into `grads`.
pub fn checkpoint(
    x: &Tensor,
    f: Recompute,
    params: Vec<Var>,
    grads: &Arc<CheckpointGrads>,
) -> Result<Tensor> {
    let out = no_grad(|| f(&x.detach()))?;
    // An untracked input (the embeddings feeding layer 0) would drop the op from the graph.
    let x = if x.track_op() { x.clone() } else { Var::from_tensor(x)?.into_inner() };
    let op = Checkpoint {
        f,
        params,
        grads: grads.clone(),
        out: Precomputed::of_tensor("checkpoint", &out)?,
    };
    Ok(x.apply_op1(op)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use crate::mask::attention_mask;
    use crate::testing::write_tiny_model;
    use crate::{LanguageModel, LoadOptions, LoraAdapter, LoraConfig, TargetModule};

    use super::*;

    /// LoRA gradients of `sum(hidden * w)` on the tiny model, with or without checkpointing.
    fn lora_grads(checkpointing: bool) -> Vec<(String, Vec<f32>)> {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_model(dir.path()).unwrap();
        let mut lm =
            LanguageModel::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
        let cfg = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: TargetModule::ALL.to_vec(),
            use_rslora: false,
        };
        let adapter = LoraAdapter::init(&mut lm.model, cfg, 1).unwrap();
        for (name, var) in adapter.named_vars() {
            if name.contains("lora_B") {
                let v: Vec<f32> =
                    (0..var.elem_count()).map(|i| ((i * 31 % 17) as f32 - 8.0) * 0.01).collect();
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
            }
        }
        let side = checkpointing.then(|| lm.model.enable_gradient_checkpointing());
        let ids =
            Tensor::new(&[[3u32, 9, 14, 2, 40, 7], [5, 5, 60, 1, 0, 33]], &Device::Cpu).unwrap();
        let mask = attention_mask(6, 0, None, None, &Device::Cpu)
            .unwrap()
            .unwrap()
            .repeat((2, 1, 1, 1))
            .unwrap();
        let hidden = lm.model.forward_hidden_masked(&ids, &mask).unwrap();
        let w: Vec<f32> =
            (0..hidden.elem_count()).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
        let w = Tensor::from_vec(w, hidden.dims(), &Device::Cpu).unwrap();
        let store = (hidden * w).unwrap().sum_all().unwrap().backward().unwrap();
        let outer = adapter.vars().iter().filter(|v| store.get(v.as_tensor()).is_some()).count();
        assert_eq!(
            outer,
            if checkpointing { 0 } else { 28 },
            "checkpointed layers keep LoRA out of the outer graph"
        );
        adapter
            .named_vars()
            .into_iter()
            .map(|(name, var)| {
                let g = store
                    .get(var.as_tensor())
                    .cloned()
                    .or_else(|| side.as_ref().and_then(|s| s.take(&var)));
                (
                    name,
                    g.expect("every LoRA variable gets a gradient")
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn checkpointed_layers_give_the_same_lora_gradients() {
        let (plain, ckpt) = (lora_grads(false), lora_grads(true));
        assert_eq!(plain.len(), 28);
        for ((name, a), (_, b)) in plain.iter().zip(&ckpt) {
            let scale = a.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(diff / scale < 1e-5, "{name}: relative diff {}", diff / scale);
        }
    }
}
