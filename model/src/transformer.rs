//! The Llama-family decoder (Touvron et al. 2023, <https://arxiv.org/abs/2302.13971>): RMSNorm,
//! rotary attention with grouped-query heads (Ainslie et al. 2023, <https://arxiv.org/abs/2305.13245>),
//! SwiGLU MLP. Mistral adds a sliding window, Qwen2 biases on q/k/v (read when present).

use std::sync::Arc;

use candle_core::{DType, Device, Module, Tensor, Var};

use crate::checkpoint::{checkpoint, grad_disabled, CheckpointGrads, Recompute};

use crate::config::Config;
use crate::kv_cache::KvCache;
use crate::layers::bf16_gemm::matmul_in_scope;
use crate::layers::softmax::masked_softmax;
use crate::layers::{
    decode_attention, generation_kernels, ragged_attention, silu_mul, silu_mul_halves, Embedding,
    FusedLinear, Linear, RmsNorm, RotaryEmbedding,
};
use crate::mask::attention_mask;
use crate::process::{on_pool, on_pool_awake};
use crate::weights::Weights;
use crate::Result;

/// Whether fused projections may copy quantized weights: worth it below ~2B parameters, where
/// per-matmul overhead rather than memory bandwidth bounds decoding.
fn fuse_copies(cfg: &Config) -> bool {
    let per_layer =
        cfg.hidden_size * (cfg.num_attention_heads + 2 * cfg.kv_heads()) * cfg.head_dim()
            + 3 * cfg.hidden_size * cfg.intermediate_size;
    per_layer * cfg.num_hidden_layers < 2_000_000_000
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    gate_up: Option<FusedLinear>,
}

impl Mlp {
    fn new(cfg: &Config, w: Weights) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let mut gate_proj = Linear::new(h, i, w.pp("gate_proj"))?;
        let mut up_proj = Linear::new(h, i, w.pp("up_proj"))?;
        let gate_up = FusedLinear::new(&mut [&mut gate_proj, &mut up_proj], fuse_copies(cfg))?;
        Ok(Self { gate_proj, up_proj, down_proj: Linear::new(i, h, w.pp("down_proj"))?, gate_up })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let a = match &self.gate_up {
            Some(f)
                if !x.track_op()
                    && self.gate_proj.lora().is_none()
                    && self.up_proj.lora().is_none() =>
            {
                let y = f.forward_joined(x).map_err(candle_core::Error::wrap)?;
                silu_mul_halves(&y)?
            }
            _ => silu_mul(&self.gate_proj.forward(x)?, &self.up_proj.forward(x)?)?,
        };
        self.down_proj.forward(&a)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    qkv: Option<FusedLinear>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    rotary: Arc<RotaryEmbedding>,
}

impl Attention {
    fn new(cfg: &Config, rotary: Arc<RotaryEmbedding>, w: Weights) -> Result<Self> {
        let (h, hd) = (cfg.hidden_size, cfg.head_dim());
        let (heads, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let mut q_proj = Linear::new(h, heads * hd, w.pp("q_proj"))?;
        let mut k_proj = Linear::new(h, kv * hd, w.pp("k_proj"))?;
        let mut v_proj = Linear::new(h, kv * hd, w.pp("v_proj"))?;
        Ok(Self {
            qkv: FusedLinear::new(&mut [&mut q_proj, &mut k_proj, &mut v_proj], fuse_copies(cfg))?,
            q_proj,
            k_proj,
            v_proj,
            o_proj: Linear::new(heads * hd, h, w.pp("o_proj"))?,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim: hd,
            rotary,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        offset: usize,
    ) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let y = self.attend(&q, &k, &v, mask, cache, offset)?;
        Ok(self.o_proj.forward(&y)?)
    }

    /// One step of independent sequences: `x` `(n, 1, hidden)` stacks the new tokens of every
    /// sequence, `spans[i]` rows for the sequence cached in `caches[i]`, at the positions `rope`
    /// (per-row tables) gives. Projections and RoPE run over all rows at once; [`ragged_attention`]
    /// writes each sequence's keys and values into its cache and attends every row over its own
    /// sequence's positions (the last `window` of them with a sliding window), exactly as when
    /// the sequence is decoded alone.
    fn forward_rows(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        spans: &[usize],
        caches: &mut [&mut KvCache],
        layer: usize,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let (q, k, v) = self.project(x)?;
        let n = x.dim(0)?;
        let (hd, kvh) = (self.head_dim, self.num_kv_heads);
        let q = RotaryEmbedding::apply_rows(
            &q.reshape((n, 1, self.num_heads, hd))?.transpose(1, 2)?,
            &rope.0,
            &rope.1,
        )?;
        let k = RotaryEmbedding::apply_rows(
            &k.reshape((n, 1, kvh, hd))?.transpose(1, 2)?,
            &rope.0,
            &rope.1,
        )?;
        // `v` `(n, 1, kv_heads * hd)` as projected: the fused projection's strided rows.
        let y = ragged_attention(
            &q,
            &k,
            &v,
            spans,
            caches,
            layer,
            window,
            hd,
            (1.0 / (hd as f64).sqrt()) as f32,
        )?;
        Ok(self.o_proj.forward(&y)?)
    }

    /// The q, k, v projections `(b, t, heads * head_dim)` of `x`.
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let plain = [&self.q_proj, &self.k_proj, &self.v_proj].iter().all(|l| l.lora().is_none());
        Ok(match &self.qkv {
            Some(f) if plain && !x.track_op() => {
                let mut parts = f.forward(x)?.into_iter();
                (parts.next().expect("q"), parts.next().expect("k"), parts.next().expect("v"))
            }
            _ => (self.q_proj.forward(x)?, self.k_proj.forward(x)?, self.v_proj.forward(x)?),
        })
    }

    /// Rotary attention of projected `q`, `k`, `v`; returns the heads' outputs `(b, t, heads * head_dim)`.
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        offset: usize,
    ) -> Result<Tensor> {
        let (b, t, _) = q.dims3()?;
        let (hd, kvh) = (self.head_dim, self.num_kv_heads);
        let q = q.reshape((b, t, self.num_heads, hd))?.transpose(1, 2)?;
        let k = k.reshape((b, t, kvh, hd))?.transpose(1, 2)?;
        let v = v.reshape((b, t, kvh, hd))?.transpose(1, 2)?;
        let (q, k) = self.rotary.apply(&q, &k, offset)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v.contiguous()?),
        };
        self.attend_rotated(&q, &k, &v, mask, 1.0 / (hd as f64).sqrt())
    }

    /// How a KV cache keeps keys and values: f16 where the projections are quantized (the
    /// generation kernels' path), as llama.cpp's default cache holds them; f32 otherwise.
    fn kv_dtype(&self) -> DType {
        if matches!(self.q_proj.weight(), candle_core::quantized::QMatMul::QTensor(_)) {
            DType::F16
        } else {
            DType::F32
        }
    }

    /// Attention of rotated `q` `(b, heads, t, hd)` over `k`, `v` `(b, kv_heads, s, hd)` (the
    /// cache included) under `mask`; `(b, t, heads * head_dim)`.
    fn attend_rotated(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: f64,
    ) -> Result<Tensor> {
        let (b, _, t, hd) = q.dims4()?;
        let kvh = self.num_kv_heads;
        if mask.is_none() && !q.track_op() {
            if let Some(y) = decode_attention(q, k, v, scale as f32)? {
                return Ok(y);
            }
        }
        // An f16 cache is read in f32 here.
        let (k, v) = if q.dtype() == DType::F32 {
            (&crate::kv_cache::widened(k)?, &crate::kv_cache::widened(v)?)
        } else {
            (&k.to_dtype(q.dtype())?, &v.to_dtype(q.dtype())?)
        };
        // Grouped-query attention without copying keys: the n_rep query heads sharing a kv head
        // are adjacent, so fold them into the query length.
        let n_rep = self.num_heads / kvh;
        let q = q.contiguous()?.reshape((b, kvh, n_rep * t, hd))?;
        if q.track_op() || k.track_op() || v.track_op() {
            // Training: one op that keeps no (t x s) tensor for backward.
            let y = crate::train_attention::attention(&q, k, v, mask, n_rep, scale)?;
            let y = y.reshape((b, self.num_heads, t, hd))?.transpose(1, 2)?;
            return Ok(y.reshape((b, t, self.num_heads * hd))?);
        }
        let att = masked_softmax(&matmul_in_scope(&q, &k.t()?)?, mask, n_rep, scale as f32)?;
        let y = matmul_in_scope(&att, v)?.reshape((b, self.num_heads, t, hd))?.transpose(1, 2)?;
        Ok(y.reshape((b, t, self.num_heads * hd))?)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn new(cfg: &Config, rotary: Arc<RotaryEmbedding>, w: Weights) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(cfg, rotary, w.pp("self_attn"))?,
            mlp: Mlp::new(cfg, w.pp("mlp"))?,
            input_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                w.pp("input_layernorm"),
            )?,
            post_attention_layernorm: RmsNorm::new(
                cfg.hidden_size,
                cfg.rms_norm_eps,
                w.pp("post_attention_layernorm"),
            )?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        offset: usize,
    ) -> Result<Tensor> {
        let h = self.self_attn.forward(&self.input_layernorm.forward(x)?, mask, cache, offset)?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?;
        Ok((x + h)?)
    }

    fn forward_rows(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        spans: &[usize],
        caches: &mut [&mut KvCache],
        layer: usize,
        window: Option<usize>,
    ) -> Result<Tensor> {
        let h = self.self_attn.forward_rows(
            &self.input_layernorm.forward(x)?,
            rope,
            spans,
            caches,
            layer,
            window,
        )?;
        let x = (x + h)?;
        let h = self.mlp.forward(&self.post_attention_layernorm.forward(&x)?)?;
        Ok((x + h)?)
    }

    /// The trainable LoRA variables this layer reads.
    fn lora_vars(&self) -> Vec<Var> {
        let (a, m) = (&self.self_attn, &self.mlp);
        [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
            .iter()
            .filter_map(|l| l.lora())
            .flat_map(|l| [l.a().clone(), l.b().clone()])
            .collect()
    }

    fn projections_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }
}

/// A Llama, Mistral or Qwen2 causal language model.
#[derive(Debug, Clone)]
pub struct Model {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    config: Config,
    device: Device,
    rotary: Arc<RotaryEmbedding>,
    checkpointing: Option<Arc<CheckpointGrads>>,
}

impl Model {
    /// Builds the model from weights named as in the Hugging Face checkpoint.
    pub fn new(cfg: &Config, w: Weights) -> Result<Self> {
        let freq_factors = if w.contains("rope_freqs.weight") {
            Some(w.get(cfg.head_dim() / 2, "rope_freqs.weight")?)
        } else {
            None
        };
        let rotary = Arc::new(RotaryEmbedding::new(cfg, freq_factors.as_ref(), w.device())?);
        let m = w.pp("model");
        let table = || m.pp("embed_tokens").get((cfg.vocab_size, cfg.hidden_size), "weight");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::new(cfg, rotary.clone(), m.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, m.pp("norm"))?;
        // A tied head is the embedding table: where it is held quantized, lookups read its blocks.
        let (embed_tokens, lm_head) = if w.pp("lm_head").contains("weight") {
            (
                Embedding::Dense(table()?),
                Linear::new(cfg.hidden_size, cfg.vocab_size, w.pp("lm_head"))?,
            )
        } else {
            let head = Linear::new(cfg.hidden_size, cfg.vocab_size, m.pp("embed_tokens"))?;
            (Embedding::tied(table, head.weight())?, head)
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: cfg.clone(),
            device: w.device().clone(),
            rotary,
            checkpointing: None,
        })
    }

    /// An empty KV cache for this model. Where the projections are quantized (the generation
    /// kernels' path) it stores f16, as llama.cpp's default cache does: a decoding step's
    /// attention reads half the bytes, which at 8 sequences of 128 positions are some 47 MB a
    /// step in f32, beside the weights' 112 MB. Exact f32 weights keep an exact f32 cache.
    pub fn kv_cache(&self) -> KvCache {
        KvCache::with_dtype(
            &self.config,
            self.layers.first().map_or(DType::F32, |l| l.self_attn.kv_dtype()),
        )
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Final hidden states `(b, t, hidden)` for `input_ids` `(b, t)`, appending to `cache` when
    /// given. `left_pad[b]` leading positions of row `b` are padding and are never attended to.
    pub fn forward_hidden(
        &self,
        input_ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        left_pad: Option<&[usize]>,
    ) -> Result<Tensor> {
        let (_, t) = input_ids.dims2()?;
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let window = self.config.effective_sliding_window();
        let mask = attention_mask(t, offset, left_pad, window, &self.device)?;
        let ids = input_ids.to_dtype(DType::U32)?;
        let (b, t) = ids.dims2()?;
        let mut x = self.embed_tokens.forward(&ids.flatten_all()?)?.reshape((b, t, ()))?;
        for (i, layer) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(&x, mask.as_ref(), c, offset)?;
        }
        if let Some(c) = cache {
            c.advance(t);
        }
        Ok(self.norm.forward(&x)?)
    }

    /// Final hidden states for `input_ids` `(b, t)` under an additive attention `mask`
    /// `(b, 1, t, t)` (0 visible, -inf hidden), e.g. block-diagonal causal masks of packed
    /// sequences. Positions run on across a row; RoPE depends only on relative positions, so a
    /// segment that sees only itself scores as it would alone.
    pub fn forward_hidden_masked(&self, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let ids = input_ids.to_dtype(DType::U32)?;
        let (b, t) = ids.dims2()?;
        let mut x = self.embed_tokens.forward(&ids.flatten_all()?)?.reshape((b, t, ()))?;
        for layer in &self.layers {
            let params = layer.lora_vars();
            x = match &self.checkpointing {
                Some(grads) if !params.is_empty() && !grad_disabled() => {
                    let (layer, mask) = (layer.clone(), mask.clone());
                    let f: Recompute =
                        Arc::new(move |x: &Tensor| layer.forward(x, Some(&mask), None, 0));
                    checkpoint(&x, f, params, grads)?
                }
                _ => layer.forward(&x, Some(mask), None, 0)?,
            };
        }
        Ok(self.norm.forward(&x)?)
    }

    /// Turns on gradient checkpointing for [`Self::forward_hidden_masked`] (the training path):
    /// each adapted layer keeps only its input and recomputes itself in backward. The LoRA
    /// gradients those recomputations find land in the returned store, not in the outer
    /// backward's; the trainer adds the two.
    pub fn enable_gradient_checkpointing(&mut self) -> Arc<CheckpointGrads> {
        self.checkpointing.get_or_insert_with(Default::default).clone()
    }

    /// The store of checkpointed gradients, when checkpointing is on.
    pub fn checkpoint_grads(&self) -> Option<&Arc<CheckpointGrads>> {
        self.checkpointing.as_ref()
    }

    /// Logits over the vocabulary for hidden states of any shape `(..., hidden)`.
    pub fn lm_head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }

    /// The vocabulary head (for fused losses that never materialize all logits).
    pub fn lm_head_linear(&self) -> &Linear {
        &self.lm_head
    }

    /// Logits `(b, t, vocab)` for every position.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        cache: Option<&mut KvCache>,
        left_pad: Option<&[usize]>,
    ) -> Result<Tensor> {
        self.lm_head(&self.forward_hidden(input_ids, cache, left_pad)?)
    }

    /// Logits `(b, vocab)` of the last position only (what generation needs), computed with the
    /// generation kernels ([`generation_kernels`]). One unpadded sequence with a cache takes
    /// the continuous-batching step ([`Self::forward_ragged`]), so a prompt prefilled here gets
    /// the logits it gets in a batch.
    pub fn forward_last(
        &self,
        input_ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        left_pad: Option<&[usize]>,
    ) -> Result<Tensor> {
        let unpadded = left_pad.is_none_or(|p| p.iter().all(|&x| x == 0));
        if let (Some(cache), (1, _), true) = (cache.as_deref_mut(), input_ids.dims2()?, unpadded) {
            return self.forward_ragged(
                &[&input_ids.squeeze(0)?.to_dtype(DType::U32)?.to_vec1::<u32>()?],
                &mut [cache],
            );
        }
        on_pool(|| {
            generation_kernels(|| {
                let h = self.forward_hidden(input_ids, cache, left_pad)?;
                let t = h.dim(1)?;
                self.lm_head(&h.narrow(1, t - 1, 1)?.squeeze(1)?)
            })
        })
    }

    /// One decoding step of independent sequences (continuous batching): `tokens[i]` is the next
    /// token of the sequence whose keys and values `caches[i]` holds, each at its own length.
    /// Returns the next-token logits `(b, vocab)`. See [`Self::forward_ragged`].
    pub fn forward_rows(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let seqs: Vec<&[u32]> = tokens.chunks(1).collect();
        self.forward_ragged(&seqs, caches)
    }

    /// One step of independent sequences that each bring any number of new tokens: `seqs[i]`
    /// continues the sequence whose keys and values `caches[i]` holds (a whole prompt to
    /// prefill, or one token to decode). Returns the logits of each sequence's last new token,
    /// `(b, vocab)`. The matmuls read each weight once for all the new tokens, and with the
    /// generation kernels a row's product does not depend on the other rows; every row attends
    /// over its own sequence's cache as a decoded token does. So a sequence's logits are those
    /// of running it alone, token by token or in any chunks, and sequences can join (with their
    /// prompts) or leave between steps.
    pub fn forward_ragged(&self, seqs: &[&[u32]], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        on_pool_awake(|| generation_kernels(|| self.ragged_step(seqs, caches)))
    }

    fn ragged_step(&self, seqs: &[&[u32]], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        if seqs.len() != caches.len() || seqs.is_empty() || seqs.iter().any(|s| s.is_empty()) {
            return Err(crate::Error::InvalidRequest(format!(
                "{} token sequences (each non-empty) for {} caches",
                seqs.len(),
                caches.len()
            )));
        }
        let window = self.config.effective_sliding_window();
        let positions: Vec<usize> =
            seqs.iter().zip(caches.iter()).flat_map(|(s, c)| c.len()..c.len() + s.len()).collect();
        let spans: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let rope = self.rotary.at_positions(&positions)?;
        let ids = Tensor::new(seqs.concat(), &self.device)?;
        let mut x = self.embed_tokens.forward(&ids)?.reshape((positions.len(), 1, ()))?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward_rows(&x, &rope, &spans, caches, i, window)?;
        }
        caches.iter_mut().zip(&spans).for_each(|(c, &t)| c.advance(t));
        // The last new row of each sequence.
        let last: Vec<u32> = spans
            .iter()
            .scan(0, |end, &t| {
                *end += t;
                Some(*end as u32 - 1)
            })
            .collect();
        let x = x.squeeze(1)?.index_select(&Tensor::new(last, &self.device)?, 0)?;
        self.lm_head(&self.norm.forward(&x)?)
    }

    /// Every adaptable projection with its Hugging Face module path
    /// (`model.layers.0.self_attn.q_proj`), for attaching LoRA.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (name, linear) in layer.projections_mut() {
                out.push((format!("model.layers.{i}.{name}"), linear));
            }
        }
        out
    }

    /// Turns every attached LoRA update on or off.
    pub fn set_lora_enabled(&mut self, enabled: bool) {
        self.projections_mut().into_iter().for_each(|(_, l)| l.set_lora_enabled(enabled));
    }

    /// Folds every attached LoRA update into its weight.
    pub fn merge_lora(&mut self) -> Result<()> {
        self.projections_mut().into_iter().try_for_each(|(_, l)| l.merge_lora())
    }

    /// Undoes `merge_lora`.
    pub fn unmerge_lora(&mut self) -> Result<()> {
        self.projections_mut().into_iter().try_for_each(|(_, l)| l.unmerge_lora())
    }

    /// Removes every LoRA update.
    pub fn remove_lora(&mut self) -> Result<()> {
        self.projections_mut().into_iter().try_for_each(|(_, l)| l.set_lora(None))
    }

    /// Training mode turns on LoRA dropout.
    pub fn set_training(&mut self, training: bool) {
        self.projections_mut().into_iter().for_each(|(_, l)| l.set_training(training));
    }
}
