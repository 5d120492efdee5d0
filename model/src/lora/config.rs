//! The LoRA hyper-parameters, serialized as PEFT's `adapter_config.json`.

use serde::{Deserialize, Deserializer, Serialize};

/// A projection LoRA can adapt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetModule {
    /// Attention query projection.
    QProj,
    /// Attention key projection.
    KProj,
    /// Attention value projection.
    VProj,
    /// Attention output projection.
    OProj,
    /// MLP gate projection.
    GateProj,
    /// MLP up projection.
    UpProj,
    /// MLP down projection.
    DownProj,
}

impl TargetModule {
    /// All seven projections (PEFT's `all-linear` on these models).
    pub const ALL: [TargetModule; 7] = [
        Self::QProj,
        Self::KProj,
        Self::VProj,
        Self::OProj,
        Self::GateProj,
        Self::UpProj,
        Self::DownProj,
    ];

    /// The Hugging Face module name, e.g. `q_proj`.
    pub fn name(self) -> &'static str {
        match self {
            Self::QProj => "q_proj",
            Self::KProj => "k_proj",
            Self::VProj => "v_proj",
            Self::OProj => "o_proj",
            Self::GateProj => "gate_proj",
            Self::UpProj => "up_proj",
            Self::DownProj => "down_proj",
        }
    }

    /// Parses a Hugging Face module name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// LoRA hyper-parameters; the field names are PEFT's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Rank of the update.
    pub r: usize,
    /// Scale numerator: the update is multiplied by `alpha / r` (or `alpha / sqrt(r)` with rsLoRA).
    pub lora_alpha: f64,
    /// Dropout on the LoRA input during training.
    #[serde(default)]
    pub lora_dropout: f32,
    /// Which projections to adapt.
    #[serde(deserialize_with = "deserialize_targets")]
    pub target_modules: Vec<TargetModule>,
    /// rsLoRA: scale by `alpha / sqrt(r)`.
    #[serde(default)]
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.0,
            target_modules: TargetModule::ALL.to_vec(),
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// The factor applied to `B A x`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The full `adapter_config.json` document PEFT expects.
    pub fn to_peft_json(&self, base_model: &str) -> serde_json::Value {
        let targets: Vec<&str> = self.target_modules.iter().map(|m| m.name()).collect();
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "target_modules": targets,
            "use_rslora": self.use_rslora,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "use_dora": false,
        })
    }
}

/// PEFT writes `target_modules` as a list of names, or as a single string (`all-linear` or a name).
fn deserialize_targets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TargetModule>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let names = match Raw::deserialize(d)? {
        Raw::One(s) if s == "all-linear" => return Ok(TargetModule::ALL.to_vec()),
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    };
    names
        .iter()
        .map(|n| {
            TargetModule::from_name(n).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown LoRA target `{n}` (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj)"
                ))
            })
        })
        .collect()
}
