//! Attention for training as one differentiable op that stores nothing of size `t x s`.
//!
//! Composed from candle ops, `softmax(q k^T * scale + mask) v` keeps the scores, the masked
//! scores, the softmax and its intermediates alive for backward: several `(b, heads, t, s)`
//! tensors per layer, most of a training step's memory. Here forward runs outside the graph
//! with a one-pass masked softmax and backward recomputes the probabilities (one extra `q k^T`),
//! as FlashAttention does (Dao et al. 2022, <https://arxiv.org/abs/2205.14135>):
//! `dV = P^T dO`, `dS = P * (dO V^T - rowsum(dO * O)) * scale`, `dQ = dS K`, `dK = dS^T Q`.
//! Inside a [`bf16_products`](crate::layers::bf16_products) scope the six products run in bf16.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor, D};

use crate::layers::bf16_gemm::matmul_in_scope as mm;
use crate::layers::softmax::{masked_softmax, softmax_backward};
use crate::precomputed::Precomputed;

/// `(b, kvh, n_rep * t, s)` attention probabilities; `mask` is `(b or 1, 1, t, s)`.
fn probs(
    q: &Tensor,
    k: &Tensor,
    mask: Option<&Tensor>,
    n_rep: usize,
    scale: f64,
) -> candle_core::Result<Tensor> {
    masked_softmax(&mm(q, &k.t()?)?, mask, n_rep, scale as f32)
}

struct Attention {
    mask: Option<Tensor>,
    n_rep: usize,
    scale: f64,
    out: Precomputed,
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "train-attention"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.out.take()
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (q, k, v, o) = (q.detach(), k.detach(), v.detach(), o.detach());
        let d_o = grad.contiguous()?;
        let p = probs(&q, &k, self.mask.as_ref(), self.n_rep, self.scale)?;
        // `dV = P^T dO` and `dK = dS^T Q` as the transposes of `dO^T P` and `Q^T dS`: the left
        // operands to transpose are then the `(t, hd)` ones, not the `(t, s)` probabilities.
        let dv = mm(&d_o.t()?, &p)?.t()?;
        let dp = mm(&d_o, &v.t()?)?;
        let row = (&d_o * &o)?.sum_keepdim(D::Minus1)?;
        let ds = softmax_backward(&p, &dp, &row, self.scale as f32)?;
        let dq = mm(&ds, &k)?;
        let dk = mm(&q.t()?, &ds)?.t()?;
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

/// `softmax(q k^T * scale + mask) v` for `q` `(b, kvh, n_rep * t, hd)` (the `n_rep` query heads
/// sharing a kv head folded into the query length), `k`, `v` `(b, kvh, s, hd)` and an additive
/// `mask` `(b or 1, 1, t, s)`; `(b, kvh, n_rep * t, hd)`. Differentiable in `q`, `k` and `v` on
/// CPU without keeping any `t x s` tensor between forward and backward.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    n_rep: usize,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let out = mm(&probs(&q.detach(), &k.detach(), mask, n_rep, scale)?, &v.detach())?;
    let tracked = q.track_op() || k.track_op() || v.track_op();
    if !tracked || !q.device().is_cpu() {
        return Ok(out);
    }
    q.apply_op3(
        &k,
        &v,
        Attention {
            mask: mask.cloned(),
            n_rep,
            scale,
            out: Precomputed::of_tensor("train-attention", &out)?,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_composed_attention_and_its_gradients() {
        let dev = Device::Cpu;
        let (b, kvh, n_rep, t, hd) = (2, 2, 3, 5, 4);
        let var = |s: (usize, usize, usize, usize)| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, s, &dev).unwrap()).unwrap()
        };
        let (q, k, v) = (var((b, kvh, n_rep * t, hd)), var((b, kvh, t, hd)), var((b, kvh, t, hd)));
        let mut m = vec![0f32; b * t * t];
        for bi in 0..b {
            for i in 0..t {
                for j in 0..t {
                    if j > i || (bi == 1 && i >= 3 && j < 3) {
                        m[(bi * t + i) * t + j] = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(m, (b, 1, t, t), &dev).unwrap();
        let scale = 0.5;
        let composed = {
            let att = (q.as_tensor().matmul(&k.as_tensor().t().unwrap()).unwrap() * scale).unwrap();
            let att = att
                .reshape((b, kvh, n_rep, t, t))
                .unwrap()
                .broadcast_add(&mask.unsqueeze(1).unwrap())
                .unwrap()
                .reshape((b, kvh, n_rep * t, t))
                .unwrap();
            candle_nn::ops::softmax(&att, D::Minus1).unwrap().matmul(v.as_tensor()).unwrap()
        };
        let fused =
            attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), Some(&mask), n_rep, scale)
                .unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(max_diff(&composed, &fused) < 1e-5);
        let coef = Tensor::randn(0f32, 1.0, composed.shape(), &dev).unwrap();
        let g1 = (composed * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (fused * &coef).unwrap().sum_all().unwrap().backward().unwrap();
        for x in [&q, &k, &v] {
            let d = max_diff(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
            assert!(d < 1e-5, "gradient differs by {d}");
        }
    }
}
