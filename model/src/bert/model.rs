//! The BERT encoder in candle's style: private blocks built with `new(cfg, vb)`, `vb.pp(..)` following
//! the checkpoint's key tree (`embeddings.*`, `encoder.layer.N.*`), bidirectional attention with a
//! padding mask. Dropout is omitted: this is inference only.

use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, layer_norm, linear, Embedding, LayerNorm, Linear, VarBuilder};

use super::config::{BertConfig, HiddenAct};
use crate::Result;

/// Word, position and segment embeddings, summed and normalized.
struct Embeddings {
    words: Embedding,
    positions: Embedding,
    segments: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            words: embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("word_embeddings"))?,
            positions: embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            segments: embedding(
                cfg.type_vocab_size,
                cfg.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `ids`: (batch, seq) u32; every token is in segment 0.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, seq) = ids.dims2()?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?;
        let segments = Tensor::zeros(seq, DType::U32, ids.device())?;
        let pos_seg = (self.positions.forward(&positions)? + self.segments.forward(&segments)?)?;
        let x = self.words.forward(ids)?.broadcast_add(&pos_seg)?;
        Ok(self.norm.forward(&x)?)
    }
}

/// Multi-head self-attention with its output projection, residual and norm.
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let s = vb.pp("self");
        let o = vb.pp("output");
        Ok(Self {
            query: linear(h, h, s.pp("query"))?,
            key: linear(h, h, s.pp("key"))?,
            value: linear(h, h, s.pp("value"))?,
            out: linear(h, h, o.pp("dense"))?,
            norm: layer_norm(h, cfg.layer_norm_eps, o.pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x`: (batch, seq, hidden); `bias`: (batch, 1, 1, seq), 0 for real keys and a large negative for padding.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, s, h) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            Ok(t.reshape((b, s, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, h))?;
        Ok(self.norm.forward(&(self.out.forward(&ctx)? + x)?)?)
    }
}

/// The position-wise feed-forward block with its residual and norm.
struct FeedForward {
    up: Linear,
    down: Linear,
    norm: LayerNorm,
    act: HiddenAct,
}

impl FeedForward {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            up: linear(cfg.hidden_size, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            down: linear(cfg.intermediate_size, cfg.hidden_size, vb.pp("output").pp("dense"))?,
            norm: layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            act: cfg.hidden_act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let up = self.up.forward(x)?;
        let up = match self.act {
            HiddenAct::Gelu => up.gelu_erf()?,
            HiddenAct::GeluNew => up.gelu()?,
            HiddenAct::Relu => up.relu()?,
        };
        Ok(self.norm.forward(&(self.down.forward(&up)? + x)?)?)
    }
}

/// One encoder layer: attention, then feed-forward (post-norm, as in the original BERT).
struct Layer {
    attention: Attention,
    ffn: FeedForward,
}

impl Layer {
    fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attention: Attention::new(cfg, vb.pp("attention"))?,
            ffn: FeedForward::new(cfg, vb)?,
        })
    }
}

/// The BERT encoder: embeddings and `num_hidden_layers` layers; the pooler head is not loaded.
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    cfg: BertConfig,
}

impl BertModel {
    /// Builds the encoder from a `VarBuilder` over the checkpoint. Keys may sit at the root (as in
    /// sentence-transformers checkpoints) or under `bert.` (as in `BertFor*` checkpoints).
    pub fn new(cfg: &BertConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(cfg, vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: Embeddings::new(cfg, vb.pp("embeddings"))?,
            layers,
            cfg: cfg.clone(),
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The last hidden states, (batch, seq, hidden), of `ids` (batch, seq) u32 under `mask`
    /// (batch, seq), 1 for real tokens and 0 for padding (any numeric dtype).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let mask = mask.to_dtype(DType::F32)?;
        // 0 where the key is a real token, f32::MIN where it is padding: exp underflows to exactly 0.
        let bias = ((mask.ones_like()? - &mask)? * f64::from(f32::MIN))?.reshape((b, 1, 1, s))?;
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.attention.forward(&x, &bias)?;
            x = layer.ffn.forward(&x)?;
        }
        Ok(x)
    }
}
