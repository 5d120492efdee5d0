//! The key/value cache of one generation batch, kept outside the model so that one loaded model
//! can serve many sessions.
//!
//! For continuous batching each sequence owns a batch-1 cache, and a step stacks the new tokens
//! of whichever caches are live, a prompt or one decoded token each ([`crate::Model::forward_ragged`]).
//! A sequence joins the batch by adding its cache to that list and leaves by dropping it; no row
//! is ever padded or recomputed.

use candle_core::Tensor;

use crate::config::Config;
use crate::Result;

/// Positions are allocated in chunks of this many.
const CHUNK: usize = 256;

/// Cached keys and values of every layer for a batch of sequences of equal length (usually one).
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
    len: usize,
}

impl KvCache {
    /// An empty cache for a model with `cfg`.
    pub fn new(cfg: &Config) -> Self {
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| candle_nn::kv_cache::KvCache::new(2, CHUNK))
            .collect();
        Self { layers, len: 0 }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything.
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| l.reset());
        self.len = 0;
    }

    /// Appends `k`, `v` (`(batch, kv_heads, seq, head_dim)`) to layer `layer`, returning the full
    /// keys and values.
    pub(crate) fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = self.layers[layer].append(&k.contiguous()?, &v.contiguous()?)?;
        Ok((k, v))
    }

    /// Records that `n` positions were appended to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
