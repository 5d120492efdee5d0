//! Attention of one new query position over a KV cache, in plain loops over the cache's memory.
//!
//! A decoding step attends one query per sequence; done with tensor ops that is a dozen small
//! candle calls per layer and per sequence, which cost more than the arithmetic. Continuous
//! batching attends every sequence over its own cache, so this runs once per row and layer. The
//! same kernel serves a sequence decoded alone, so a row's result does not depend on the batch.

use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

/// Multiply-adds (heads x cached positions x head size) from which heads run in parallel.
const PARALLEL_FROM: usize = 1 << 16;

/// `softmax(q k^T * scale) v` for `q` `(1, heads, 1, hd)` and `k`, `v` `(1, kv_heads, s, hd)`
/// (any strides, f32, CPU) with grouped heads; returns `(1, 1, heads * hd)`, or `None` when the
/// inputs are not of that kind.
pub fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> candle_core::Result<Option<Tensor>> {
    let (b, heads, t, hd) = q.dims4()?;
    let (kb, kvh, s, khd) = k.dims4()?;
    if b != 1 || t != 1 || kb != 1 || khd != hd || v.dims() != k.dims() || heads % kvh != 0 || s == 0 {
        return Ok(None);
    }
    if [q, k, v].iter().any(|x| x.dtype() != DType::F32 || !x.device().is_cpu()) {
        return Ok(None);
    }
    let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else { return Ok(None) };
    let (kd, vd) = (ks.as_slice::<f32>()?, vs.as_slice::<f32>()?);
    let (kst, vst) = (kl.stride(), vl.stride());
    if kst[3] != 1 || vst[3] != 1 {
        return Ok(None);
    }
    let n_rep = heads / kvh;
    let mut out = vec![0f32; heads * hd];
    let head = |h: usize, o: &mut [f32]| {
        let g = h / n_rep;
        let qh = &q[h * hd..(h + 1) * hd];
        let kbase = kl.start_offset() + g * kst[1];
        let vbase = vl.start_offset() + g * vst[1];
        let mut scores: Vec<f32> = (0..s).map(|j| dot(qh, &kd[kbase + j * kst[2]..kbase + j * kst[2] + hd]) * scale).collect();
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f32;
        for sc in scores.iter_mut() {
            *sc = (*sc - max).exp();
            sum += *sc;
        }
        for (j, &p) in scores.iter().enumerate() {
            let vr = &vd[vbase + j * vst[2]..vbase + j * vst[2] + hd];
            let p = p / sum;
            o.iter_mut().zip(vr).for_each(|(o, v)| *o += p * v);
        }
    };
    // Heads are independent: over a long cache they are worth spreading over the threads. Each
    // head's arithmetic is the same either way, so the result does not depend on the split.
    if heads * s * hd >= PARALLEL_FROM {
        out.par_chunks_mut(hd).enumerate().for_each(|(h, o)| head(h, o));
    } else {
        out.chunks_mut(hd).enumerate().for_each(|(h, o)| head(h, o));
    }
    Ok(Some(Tensor::from_vec(out, (1, 1, heads * hd), &candle_core::Device::Cpu)?))
}

/// A dot product in eight lanes (vectorized by the compiler without reassociating floats).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        total += x * y;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `decode_attention` against the tensor formula on `filled` of `cap` cached positions.
    fn check(heads: usize, kv: usize, hd: usize, cap: usize, filled: usize) {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, heads, 1, hd), &dev).unwrap();
        // A strided view of a partly filled buffer, as KvCache gives.
        let kbuf = Tensor::randn(0f32, 1.0, (1, kv, cap, hd), &dev).unwrap();
        let vbuf = Tensor::randn(0f32, 1.0, (1, kv, cap, hd), &dev).unwrap();
        let (k, v) = (kbuf.narrow(2, 0, filled).unwrap(), vbuf.narrow(2, 0, filled).unwrap());
        let got = decode_attention(&q, &k, &v, 0.25).unwrap().unwrap();
        let qg = q.reshape((1, kv, heads / kv, hd)).unwrap();
        let att = (qg.matmul(&k.contiguous().unwrap().t().unwrap()).unwrap() * 0.25).unwrap();
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let want = att.matmul(&v.contiguous().unwrap()).unwrap().reshape((1, 1, heads * hd)).unwrap();
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
    }

    #[test]
    fn equals_the_tensor_formula_with_grouped_heads_and_strided_cache() {
        check(6, 2, 16, 10, 7);
    }

    #[test]
    fn heads_in_parallel_over_a_long_cache_give_the_same_result() {
        assert!(6 * 300 * 64 >= PARALLEL_FROM);
        check(6, 2, 64, 320, 300);
    }
}
