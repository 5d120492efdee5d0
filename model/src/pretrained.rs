//! [`LanguageModel`]: a checkpoint loaded whole (weights, tokenizer, chat template) from a GGUF
//! file or a Hugging Face safetensors directory. The one entry point train, eval and serve use.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;

use crate::chat_template::{ChatTemplate, Message};
use crate::config::Config;
use crate::generation::{generate, Generation, GenerationConfig, TokenEvent};
use crate::lora::LoraAdapter;
use crate::resolve::{resolve_model, ModelLocation};
use crate::scoring::{score_tokens, LogLikelihood};
use crate::tokenizer::Tokenizer;
use crate::transformer::Model;
use crate::weights::{GgufSource, LinearFormat, SafetensorsSource, Weights};
use crate::Result;

/// How to hold a loaded model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// f32 (training, reference checks) or quantized (fast inference).
    pub format: LinearFormat,
    /// Where the tensors live.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { format: LinearFormat::F32, device: Device::Cpu }
    }
}

impl LoadOptions {
    /// Quantized weights on the CPU: what generation, scoring and serving want.
    pub fn inference() -> Self {
        Self { format: LinearFormat::Quantized, device: Device::Cpu }
    }
}

/// A model with its tokenizer and chat template.
pub struct LanguageModel {
    /// The network.
    pub model: Model,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// Its chat template (ChatML when the checkpoint ships none).
    pub chat_template: ChatTemplate,
    /// Where it was loaded from.
    pub location: ModelLocation,
}

impl LanguageModel {
    /// Loads `spec`: a GGUF path, a safetensors directory, or a known model name.
    pub fn load(spec: &str, opts: &LoadOptions) -> Result<Self> {
        Self::load_location(resolve_model(spec)?, opts)
    }

    /// Loads a resolved location.
    pub fn load_location(location: ModelLocation, opts: &LoadOptions) -> Result<Self> {
        let (model, tokenizer, template) = match &location {
            ModelLocation::Gguf(path) => {
                let src = Arc::new(GgufSource::open(path)?);
                let cfg = Config::from_gguf(src.content())?;
                let tokenizer = Tokenizer::from_gguf(src.content())?;
                let (bos, eos) = special_texts(&tokenizer);
                let template = ChatTemplate::from_gguf(src.content(), &bos, &eos)?;
                let model = Model::new(&cfg, Weights::new(src, opts.device.clone(), opts.format))?;
                (model, tokenizer, template)
            }
            ModelLocation::SafetensorsDir(dir) => {
                let cfg = Config::from_json_file(&dir.join("config.json"))?;
                let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
                let (bos, eos) = special_texts(&tokenizer);
                let template = ChatTemplate::from_tokenizer_config(
                    &dir.join("tokenizer_config.json"),
                    &bos,
                    &eos,
                )?;
                let src = Arc::new(SafetensorsSource::open_dir(dir)?);
                let model = Model::new(&cfg, Weights::new(src, opts.device.clone(), opts.format))?;
                (model, tokenizer, template)
            }
        };
        let chat_template = match template {
            Some(t) => t,
            None => {
                let (bos, eos) = special_texts(&tokenizer);
                ChatTemplate::chatml(&bos, &eos)
            }
        };
        Ok(Self { model, tokenizer, chat_template, location })
    }

    /// Loads a PEFT adapter directory onto the model.
    pub fn load_adapter(&mut self, dir: &Path) -> Result<LoraAdapter> {
        LoraAdapter::load(dir, &mut self.model)
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        self.model.config()
    }

    /// Every id that ends a generation: the config's, the tokenizer's EOS, and the chat
    /// template's end-of-turn markers (`<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`) when present.
    pub fn eos_ids(&self) -> Vec<u32> {
        let mut ids = self.config().eos_ids();
        ids.extend(self.tokenizer.eos_id());
        for t in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "</s>", "<|end|>"] {
            ids.extend(self.tokenizer.token_to_id(t));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The prompt text for `messages`, ending with an open assistant turn.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        self.chat_template.render(messages, true)
    }

    /// Token ids of the prompt for `messages` (the template writes any BOS itself, as in
    /// `transformers.apply_chat_template`).
    pub fn chat_prompt_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.chat_prompt(messages)?, false)
    }
}

impl LanguageModel {
    /// Token ids of a `(context, continuation)` pair as lm-evaluation-harness makes them: trailing
    /// spaces of the context move to the continuation, the pair is encoded whole and split at the
    /// context's length; an empty context becomes the BOS (or EOS) token.
    pub fn encode_pair(&self, context: &str, continuation: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let trimmed = context.trim_end_matches(' ');
        let moved = &context[trimmed.len()..];
        let continuation = format!("{moved}{continuation}");
        if trimmed.is_empty() {
            let start = self.tokenizer.bos_id().or(self.tokenizer.eos_id()).unwrap_or(0);
            return Ok((vec![start], self.tokenizer.encode(&continuation, false)?));
        }
        let whole = self.tokenizer.encode(&format!("{trimmed}{continuation}"), false)?;
        let ctx = self.tokenizer.encode(trimmed, false)?;
        let split = ctx.len().min(whole.len().saturating_sub(1));
        Ok((whole[..split].to_vec(), whole[split..].to_vec()))
    }

    /// Log-likelihoods of `(context, continuation)` text pairs (lm-evaluation-harness's
    /// `loglikelihood`), batched up to `batch_tokens` padded tokens per forward pass.
    pub fn score_pairs(
        &self,
        pairs: &[(&str, &str)],
        batch_tokens: usize,
    ) -> Result<Vec<LogLikelihood>> {
        let ids = pairs.iter().map(|(c, x)| self.encode_pair(c, x)).collect::<Result<Vec<_>>>()?;
        score_tokens(&self.model, &ids, batch_tokens)
    }

    /// Answers each conversation (one batch), with this model's end-of-turn ids added to
    /// `cfg.eos_ids`; `on_token` streams as in [`generate`].
    pub fn chat(
        &self,
        conversations: &[Vec<Message>],
        cfg: &GenerationConfig,
        on_token: &mut dyn FnMut(TokenEvent<'_>) -> bool,
    ) -> Result<Vec<Generation>> {
        let prompts =
            conversations.iter().map(|m| self.chat_prompt_ids(m)).collect::<Result<Vec<_>>>()?;
        let mut cfg = cfg.clone();
        cfg.eos_ids.extend(self.eos_ids());
        generate(&self.model, &self.tokenizer, &prompts, &cfg, on_token)
    }
}

fn special_texts(t: &Tokenizer) -> (String, String) {
    (t.bos_token().unwrap_or_default().to_string(), t.eos_token().unwrap_or_default().to_string())
}
