//! A set of LoRA layers attached to a [`Model`], with its variables for the optimizer and the
//! PEFT on-disk format (`adapter_config.json` + `adapter_model.safetensors`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};

use super::{LoraConfig, LoraLayer, TargetModule};
use crate::transformer::Model;
use crate::{Error, Result};

/// PEFT's config file name.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// PEFT's weights file name.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The trainable LoRA variables of one model, keyed by PEFT tensor names.
pub struct LoraAdapter {
    config: LoraConfig,
    varmap: VarMap,
}

/// PEFT's key prefix for a module path such as `model.layers.0.self_attn.q_proj`.
fn peft_prefix(module: &str) -> String {
    format!("base_model.model.{module}")
}

fn targeted(cfg: &LoraConfig, module: &str) -> bool {
    let leaf = module.rsplit('.').next().unwrap_or(module);
    TargetModule::from_name(leaf).is_some_and(|m| cfg.target_modules.contains(&m))
}

impl LoraAdapter {
    /// Creates fresh LoRA layers on `model` as PEFT does: `A` Kaiming-uniform, `B` zero, so the
    /// adapted model starts equal to the base.
    pub fn init(model: &mut Model, config: LoraConfig, seed: u64) -> Result<Self> {
        if config.r == 0 {
            return Err(Error::Lora("rank r must be at least 1".into()));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let varmap = VarMap::new();
        let device = model.device().clone();
        for (module, linear) in model.projections_mut() {
            if !targeted(&config, &module) {
                continue;
            }
            let (in_dim, out_dim) = (linear.in_dim(), linear.out_dim());
            let bound = 1.0 / (in_dim as f64).sqrt();
            let a: Vec<f32> =
                (0..config.r * in_dim).map(|_| rng.random_range(-bound..bound) as f32).collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (config.r, in_dim), &device)?)?;
            let b = Var::zeros((out_dim, config.r), DType::F32, &device)?;
            Self::attach(&varmap, &config, &module, linear, a, b)?;
        }
        Ok(Self { config, varmap })
    }

    fn attach(
        varmap: &VarMap,
        config: &LoraConfig,
        module: &str,
        linear: &mut crate::layers::Linear,
        a: Var,
        b: Var,
    ) -> Result<()> {
        let prefix = peft_prefix(module);
        let mut data =
            varmap.data().lock().map_err(|_| Error::Lora("variable map poisoned".into()))?;
        data.insert(format!("{prefix}.lora_A.weight"), a.clone());
        data.insert(format!("{prefix}.lora_B.weight"), b.clone());
        linear.set_lora(Some(LoraLayer::new(a, b, config.scaling(), config.lora_dropout)))
    }

    /// Loads a PEFT adapter directory onto `model`.
    pub fn load(dir: &Path, model: &mut Model) -> Result<Self> {
        let cfg_path = dir.join(ADAPTER_CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: LoraConfig =
            serde_json::from_str(&text).map_err(|e| Error::json(&cfg_path, e))?;
        let w_path = dir.join(ADAPTER_WEIGHTS_FILE);
        let device = model.device().clone();
        let raw =
            candle_core::safetensors::load(&w_path, &device).map_err(|e| e.with_path(&w_path))?;
        // PEFT files have no adapter name in keys; in-memory state dicts carry `.default`.
        let mut tensors: HashMap<String, Tensor> =
            raw.into_iter().map(|(k, v)| (k.replace(".default.", "."), v)).collect();
        let varmap = VarMap::new();
        for (module, linear) in model.projections_mut() {
            let prefix = peft_prefix(&module);
            let a = tensors.remove(&format!("{prefix}.lora_A.weight"));
            let b = tensors.remove(&format!("{prefix}.lora_B.weight"));
            let (a, b) = match (a, b) {
                (Some(a), Some(b)) => (a, b),
                (None, None) => continue,
                _ => {
                    return Err(Error::Lora(format!(
                        "{}: `{prefix}` has only one of lora_A/lora_B",
                        w_path.display()
                    )))
                }
            };
            let (r, in_dim) = a.dims2()?;
            if in_dim != linear.in_dim() || b.dims2()? != (linear.out_dim(), r) {
                return Err(Error::Lora(format!(
                    "{}: `{prefix}` has A {:?} and B {:?}, the model needs A (r, {}) and B ({}, r)",
                    w_path.display(),
                    a.dims(),
                    b.dims(),
                    linear.in_dim(),
                    linear.out_dim()
                )));
            }
            let a = Var::from_tensor(&a.to_dtype(DType::F32)?)?;
            let b = Var::from_tensor(&b.to_dtype(DType::F32)?)?;
            Self::attach(&varmap, &config, &module, linear, a, b)?;
        }
        if let Some(left) = tensors.keys().next() {
            return Err(Error::Lora(format!(
                "{}: tensor `{left}` matches no projection of the model",
                w_path.display()
            )));
        }
        Ok(Self { config, varmap })
    }

    /// Writes `adapter_config.json` and `adapter_model.safetensors` into `dir` (created if needed);
    /// each file appears complete or not at all.
    pub fn save(&self, dir: &Path, base_model: &str) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tensors: HashMap<String, Tensor> =
            self.named_vars().into_iter().map(|(k, v)| (k, v.as_tensor().detach())).collect();
        let tmp = dir.join(format!(".{ADAPTER_WEIGHTS_FILE}.tmp"));
        candle_core::safetensors::save(&tensors, &tmp).map_err(|e| e.with_path(&tmp))?;
        let dst = dir.join(ADAPTER_WEIGHTS_FILE);
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        let json = serde_json::to_string_pretty(&self.config.to_peft_json(base_model))
            .expect("json value");
        let tmp = dir.join(format!(".{ADAPTER_CONFIG_FILE}.tmp"));
        std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
        let dst = dir.join(ADAPTER_CONFIG_FILE);
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &LoraConfig {
        &self.config
    }

    /// The variable map (PEFT names -> variables), e.g. for `candle_nn::AdamW`.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// The trainable variables, in name order.
    pub fn vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().map(|(_, v)| v).collect()
    }

    /// The trainable variables with their PEFT names, in name order.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().expect("variable map poisoned");
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
