//! Attention of one new query position over a KV cache, in plain loops over the cache's memory.
//!
//! A decoding step attends one query per sequence; done with tensor ops that is a dozen small
//! candle calls per layer and per sequence, which cost more than the arithmetic. Continuous
//! batching attends every sequence over its own cache, so this runs once per row and layer. The
//! same kernel serves a sequence decoded alone, so a row's result does not depend on the batch.
//!
//! A long cache is attended span by span ([`SPAN`] positions) and the spans combined, as
//! flash-decoding splits the keys: after a 512-token prompt, SmolLM2 decoded at 202-207 tok/s
//! instead of 136-158 on a 2-vCPU Xeon (its 3 KV heads had kept one of 2 threads idle half the
//! time), after 2048 tokens at 127-129 instead of 98-100 (`bench generate --prompt-tokens`,
//! alternating runs).
//!
//! Reading the cache is most of the work: at 8 sequences of 128 positions an f32 cache is some
//! 47 MB a step for SmolLM2, beside the weights' 112 MB. The cache may be f16
//! ([`crate::Model::kv_cache`]), widened to f32 sixteen keys at a time into a buffer that every
//! query head of the group then reads.

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use half::f16;
use rayon::prelude::*;

use super::lanes::dot;

/// Multiply-adds (heads x cached positions x head size) from which heads run in parallel.
pub(super) const PARALLEL_FROM: usize = 1 << 16;

/// Keys (and values) widened to f32 together, then read by every query head of the group.
const BLOCK: usize = 16;

/// `softmax(q k^T * scale) v` for `q` `(1, heads, 1, hd)` (f32) and `k`, `v` `(1, kv_heads, s,
/// hd)` (any strides, f32 or f16, CPU) with grouped heads; returns `(1, 1, heads * hd)`, or
/// `None` when the inputs are not of that kind.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
) -> candle_core::Result<Option<Tensor>> {
    let (b, heads, t, hd) = q.dims4()?;
    let (kb, kvh, s, khd) = k.dims4()?;
    if b != 1
        || t != 1
        || kb != 1
        || khd != hd
        || v.dims() != k.dims()
        || heads % kvh != 0
        || s == 0
    {
        return Ok(None);
    }
    if q.dtype() != DType::F32
        || v.dtype() != k.dtype()
        || [q, k, v].iter().any(|x| !x.device().is_cpu())
    {
        return Ok(None);
    }
    let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Storage::Cpu(ks), Storage::Cpu(vs)) = (&*ks, &*vs) else { return Ok(None) };
    if kl.stride()[3] != 1 || vl.stride()[3] != 1 {
        return Ok(None);
    }
    let out = match k.dtype() {
        DType::F32 => {
            attend_all(&Cache::<f32>::of((ks, kl), (vs, vl), kvh, s, hd)?, &q, heads, scale)
        }
        DType::F16 => {
            attend_all(&Cache::<f16>::of((ks, kl), (vs, vl), kvh, s, hd)?, &q, heads, scale)
        }
        _ => return Ok(None),
    };
    Ok(Some(Tensor::from_vec(out, (1, 1, heads * hd), &candle_core::Device::Cpu)?))
}

/// Every group of query heads over its KV head: `heads * hd` outputs.
fn attend_all<T: Element>(cache: &Cache<T>, q: &[f32], heads: usize, scale: f32) -> Vec<f32> {
    let hd = cache.hd;
    let n_rep = heads / cache.heads;
    let mut out = vec![0f32; heads * hd];
    let avx512 = avx512();
    let group = |g: usize, o: &mut [f32]| {
        attend_heads(cache, g, &q[g * n_rep * hd..(g + 1) * n_rep * hd], scale, o, avx512)
    };
    // Groups of heads are independent: over a long cache they are worth spreading over the
    // threads. Each head's arithmetic is the same either way, so the result does not depend on
    // the split.
    if heads * cache.len * hd >= PARALLEL_FROM {
        out.par_chunks_mut(n_rep * hd).enumerate().for_each(|(g, o)| group(g, o));
    } else {
        out.chunks_mut(n_rep * hd).enumerate().for_each(|(g, o)| group(g, o));
    }
    out
}

/// The query heads `q` (whole heads) sharing KV head `g` attend over `c` into `out`: span by
/// span ([`SPAN`]), the spans combined in order ([`combine`]), with the AVX-512 kernel where
/// `avx512` (what [`avx512`] found) allows.
pub(super) fn attend_heads<T: Element>(
    c: &Cache<T>,
    g: usize,
    q: &[f32],
    scale: f32,
    out: &mut [f32],
    avx512: bool,
) {
    let n_rep = q.len() / c.hd;
    let mut parts = vec![0f32; c.len.div_ceil(SPAN) * part_len(n_rep, c.hd)];
    for (i, part) in parts.chunks_exact_mut(part_len(n_rep, c.hd)).enumerate() {
        attend_span(&c.positions(i * SPAN, c.len.min((i + 1) * SPAN)), g, q, scale, part, avx512);
    }
    combine(&parts, n_rep, c.hd, out);
}

/// Cached positions one task attends over. A longer cache is split into spans of this many
/// positions from its first, each attended alone (its heads' maximum scores, sums of
/// exponentials and unnormalized outputs) and combined in order: flash-decoding's split of the
/// keys, so that one row's few KV heads over a long cache spread over the threads (SmolLM2 has 3
/// KV heads for 2 threads). Spans depend on a row's positions alone, so a row's result does not
/// depend on the batch or on how the spans were shared out.
pub(super) const SPAN: usize = 256;

/// Values of one span's partial result for `n_rep` heads of size `hd`: the unnormalized outputs,
/// then each head's maximum score, then each head's sum of exponentials.
pub(super) fn part_len(n_rep: usize, hd: usize) -> usize {
    n_rep * (hd + 2)
}

/// Attention of the query heads `q` sharing KV head `g` over the span `c` into `part` (laid out
/// as [`part_len`] says).
pub(super) fn attend_span<T: Element>(
    c: &Cache<T>,
    g: usize,
    q: &[f32],
    scale: f32,
    part: &mut [f32],
    avx512: bool,
) {
    let n_rep = q.len() / c.hd;
    let (out, stats) = part.split_at_mut(n_rep * c.hd);
    if avx512 {
        // SAFETY: the caller found the feature at run time.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            return attend_group_avx512(c, g, q, scale, out, stats);
        }
    }
    attend_group(c, g, q, scale, out, stats)
}

/// The softmax-weighted outputs of `n_rep` heads from their spans' partial results, in span
/// order: each span's outputs and sum weighted by `exp(its maximum - the overall maximum)`.
pub(super) fn combine(parts: &[f32], n_rep: usize, hd: usize, out: &mut [f32]) {
    let len = part_len(n_rep, hd);
    for (r, o) in out.chunks_exact_mut(hd).enumerate() {
        let stat = |part: &[f32], i: usize| part[n_rep * hd + i * n_rep + r];
        let max = parts.chunks_exact(len).fold(f32::NEG_INFINITY, |m, p| m.max(stat(p, 0)));
        o.fill(0.0);
        let mut sum = 0f32;
        for part in parts.chunks_exact(len) {
            let w = (stat(part, 0) - max).exp();
            sum += w * stat(part, 1);
            o.iter_mut().zip(&part[r * hd..(r + 1) * hd]).for_each(|(o, v)| *o += w * v);
        }
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|o| *o *= inv);
    }
}

/// A cached value: f32, or f16 widened as it is read.
pub(crate) trait Element: Copy + Send + Sync {
    fn widen(self) -> f32;

    /// Sixteen values from `p` widened to f32.
    ///
    /// # Safety
    /// AVX-512F must be available and `p..p + 16` readable.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl Element for f32 {
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        std::arch::x86_64::_mm512_loadu_ps(p)
    }
}

impl Element for f16 {
    fn widen(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
}

/// One sequence's cached keys and values as strided memory: `[head, position]` strides.
#[derive(Clone, Copy)]
pub(super) struct Cache<'a, T> {
    k: &'a [T],
    v: &'a [T],
    k_at: usize,
    v_at: usize,
    k_strides: [usize; 2],
    v_strides: [usize; 2],
    len: usize,
    hd: usize,
    /// KV heads.
    heads: usize,
}

impl<'a, T: candle_core::WithDType> Cache<'a, T> {
    /// The keys and values `(1, heads, len, hd)` in their storage and layout (rows contiguous).
    pub(super) fn of(
        k: (&'a CpuStorage, &Layout),
        v: (&'a CpuStorage, &Layout),
        heads: usize,
        len: usize,
        hd: usize,
    ) -> candle_core::Result<Self> {
        let (kst, vst) = (k.1.stride(), v.1.stride());
        Ok(Cache {
            k: k.0.as_slice::<T>()?,
            v: v.0.as_slice::<T>()?,
            k_at: k.1.start_offset(),
            v_at: v.1.start_offset(),
            k_strides: [kst[1], kst[2]],
            v_strides: [vst[1], vst[2]],
            len,
            hd,
            heads,
        })
    }
}

impl<T> Cache<'_, T> {
    /// Positions `lo..hi` of the cache alone.
    pub(super) fn positions(&self, lo: usize, hi: usize) -> Self {
        debug_assert!(lo < hi && hi <= self.len);
        Cache {
            k_at: self.k_at + lo * self.k_strides[1],
            v_at: self.v_at + lo * self.v_strides[1],
            len: hi - lo,
            ..*self
        }
    }

    /// Whether every key and value row the cache's shape names lies inside its buffers.
    fn check(&self) -> bool {
        let last = |at: usize, st: [usize; 2], heads: usize, len: usize| {
            at + (heads - 1) * st[0] + (self.len - 1) * st[1] + self.hd <= len
        };
        self.heads > 0
            && self.len > 0
            && last(self.k_at, self.k_strides, self.heads, self.k.len())
            && last(self.v_at, self.v_strides, self.heads, self.v.len())
    }
}

pub(super) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`attend_group`] in AVX-512 intrinsics where the head size is 64 or 128 (a head's output then
/// stays in registers); compiled for AVX-512 otherwise. The compiler turned the portable loops'
/// sixteen-lane arrays into 64- and 128-bit pieces, which made attention a fifth of an 8-row
/// decoding step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn attend_group_avx512<T: Element>(
    c: &Cache<T>,
    g: usize,
    q: &[f32],
    scale: f32,
    out: &mut [f32],
    stats: &mut [f32],
) {
    match c.hd {
        // SAFETY: the feature is enabled for this function; `Cache::check` bounds every read.
        64 if c.check() => unsafe { avx512::attend::<4, T>(c, g, q, scale, out, stats) },
        128 if c.check() => unsafe { avx512::attend::<8, T>(c, g, q, scale, out, stats) },
        _ => attend_group(c, g, q, scale, out, stats),
    }
}

/// The query heads `q` (`n_rep * hd`) sharing KV head `g` attend over the cache: their
/// unnormalized outputs into `out`, their maximum scores and sums of exponentials into `stats`
/// (`n_rep` each). Each key and value row is read once for all the heads.
#[inline(always)]
fn attend_group<T: Element>(
    c: &Cache<T>,
    g: usize,
    q: &[f32],
    scale: f32,
    out: &mut [f32],
    stats: &mut [f32],
) {
    let (hd, s) = (c.hd, c.len);
    let n_rep = q.len() / hd;
    let mut scores = vec![0f32; n_rep * s];
    let mut row = vec![0f32; hd];
    for j in 0..s {
        let k = &c.k[c.k_at + g * c.k_strides[0] + j * c.k_strides[1]..][..hd];
        row.iter_mut().zip(k).for_each(|(r, k)| *r = k.widen());
        for r in 0..n_rep {
            scores[r * s + j] = dot(&q[r * hd..(r + 1) * hd], &row) * scale;
        }
    }
    for (r, p) in scores.chunks_mut(s).enumerate() {
        let max = p.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = 0f32;
        for x in p.iter_mut() {
            *x = (*x - max).exp();
            sum += *x;
        }
        (stats[r], stats[n_rep + r]) = (max, sum);
    }
    out.fill(0.0);
    for j in 0..s {
        let v = &c.v[c.v_at + g * c.v_strides[0] + j * c.v_strides[1]..][..hd];
        for (r, o) in out.chunks_exact_mut(hd).enumerate() {
            let p = scores[r * s + j];
            o.iter_mut().zip(v).for_each(|(o, v)| *o += p * v.widen());
        }
    }
}

/// The AVX-512 kernel: `L` sixteen-lane vectors per head.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Cache, Element, BLOCK};
    use crate::layers::vexp::{exp, lanes};

    /// `out[i] = sum of v[i]'s lanes` for sixteen vectors: a tree of halvings in which each step
    /// adds two vectors' halves at once (15 additions for the 16 sums, where a horizontal sum
    /// per vector takes four shuffles and four additions).
    #[inline(always)]
    pub(super) unsafe fn sum_lanes(v: [__m512; 16]) -> __m512 {
        // 256-bit halves: vector i holds v[2i]'s partials in chunks 0-1, v[2i+1]'s in 2-3.
        let a: [__m512; 8] = std::array::from_fn(|i| {
            let (x, y) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
            )
        });
        // 128-bit chunks: vector i holds v[4i + c]'s four partials in chunk c.
        let b: [__m512; 4] = std::array::from_fn(|i| {
            let (x, y) = (a[2 * i], a[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
            )
        });
        // Pairs within chunks: chunk c of vector i holds two partials of v[8i + c], two of v[8i + 4 + c].
        let c: [__m512; 2] = std::array::from_fn(|i| {
            let (x, y) = (b[2 * i], b[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(x, y),
                _mm512_shuffle_ps::<0b11_10_11_10>(x, y),
            )
        });
        // Lane 4c + m holds the sum of v[c + 4m].
        let d = _mm512_add_ps(
            _mm512_shuffle_ps::<0b10_00_10_00>(c[0], c[1]),
            _mm512_shuffle_ps::<0b11_01_11_01>(c[0], c[1]),
        );
        _mm512_permutexvar_ps(
            _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
            d,
        )
    }

    /// Rows `j0..j0 + n` (`row(j)` is row `j`'s first value) widened into `buf`, `16 * L` floats
    /// a row; rows `j0 + n..j0 + n + ahead` are prefetched meanwhile.
    #[inline(always)]
    unsafe fn widen<const L: usize, T: Element>(
        row: impl Fn(usize) -> *const T,
        j0: usize,
        n: usize,
        ahead: usize,
        buf: &mut [f32],
    ) {
        for j in j0 + n..j0 + n + ahead {
            prefetch_row::<L, T>(row(j));
        }
        for i in 0..n {
            let p = row(j0 + i);
            for l in 0..L {
                _mm512_storeu_ps(
                    buf.as_mut_ptr().add(i * 16 * L + 16 * l),
                    T::load16(p.add(16 * l)),
                );
            }
        }
    }

    /// Asks for the cache lines of one row of `16 * L` values at `p`. Each call reads a few
    /// kilobytes per head, too short a stream for the hardware prefetcher to ramp up: reading the
    /// cache was three quarters of this kernel's time before.
    #[inline(always)]
    unsafe fn prefetch_row<const L: usize, T: Element>(p: *const T) {
        let bytes = 16 * L * std::mem::size_of::<T>();
        for off in (0..bytes).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>((p as *const i8).add(off));
        }
    }

    /// The query heads `q` sharing KV head `g` attend over the cache, as [`super::attend_group`]
    /// does: unnormalized outputs into `out`, maximum scores and sums into `stats`. Keys and
    /// values are widened [`BLOCK`] rows at a time and read from there by every head, so the
    /// cache is read (and converted) once for the group.
    ///
    /// # Safety
    /// AVX-512F must be available, `c.check()` must hold, `c.hd == 16 * L`, and `q`, `out` hold
    /// whole heads.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend<const L: usize, T: Element>(
        c: &Cache<T>,
        g: usize,
        q: &[f32],
        scale: f32,
        out: &mut [f32],
        stats: &mut [f32],
    ) {
        let (hd, s) = (16 * L, c.len);
        let n_rep = q.len() / hd;
        assert!(q.len() == n_rep * hd && out.len() == q.len() && stats.len() == 2 * n_rep);
        let key = |j: usize| c.k.as_ptr().add(c.k_at + g * c.k_strides[0] + j * c.k_strides[1]);
        let value = |j: usize| c.v.as_ptr().add(c.v_at + g * c.v_strides[0] + j * c.v_strides[1]);
        let mut buf = [0f32; BLOCK * 128];
        let mut scores = vec![0f32; n_rep * s];
        let query = |r: usize| -> [__m512; L] {
            std::array::from_fn(|l| _mm512_loadu_ps(q.as_ptr().add(r * hd + 16 * l)))
        };
        let dot = |qr: &[__m512; L], row: *const f32| {
            let mut acc = _mm512_mul_ps(qr[0], _mm512_loadu_ps(row));
            for (l, ql) in qr.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(*ql, _mm512_loadu_ps(row.add(16 * l)), acc);
            }
            acc
        };
        // Scores, a block of keys at a time. In a whole block the sixteen partial-sum vectors
        // are reduced together, one score per lane; the last, partial block key by key.
        // The next block is prefetched while one is used; the first values while scores are made.
        let ahead = |j0: usize, n: usize| BLOCK.min(s - j0 - n);
        for j0 in (0..s).step_by(BLOCK) {
            let n = BLOCK.min(s - j0);
            widen::<L, T>(key, j0, n, ahead(j0, n), &mut buf);
            if j0 + n == s {
                for j in 0..BLOCK.min(s) {
                    prefetch_row::<L, T>(value(j));
                }
            }
            for r in 0..n_rep {
                let qr = query(r);
                let row = &mut scores[r * s + j0..r * s + j0 + n];
                if n == BLOCK {
                    let sums =
                        sum_lanes(std::array::from_fn(|i| dot(&qr, buf.as_ptr().add(i * hd))));
                    _mm512_storeu_ps(row.as_mut_ptr(), _mm512_mul_ps(sums, _mm512_set1_ps(scale)));
                } else {
                    for (i, score) in row.iter_mut().enumerate() {
                        *score = _mm512_reduce_add_ps(dot(&qr, buf.as_ptr().add(i * hd))) * scale;
                    }
                }
            }
        }
        // Exponentials of each head's scores less their maximum, sixteen at a time (the tail
        // masked); the maximum and the sum go to `stats`.
        for (r, row) in scores.chunks_exact_mut(s).enumerate() {
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            for at in (0..s).step_by(16) {
                let m = lanes((s - at).min(16));
                max =
                    _mm512_mask_max_ps(max, m, max, _mm512_maskz_loadu_ps(m, row.as_ptr().add(at)));
            }
            let top = _mm512_reduce_max_ps(max);
            let max = _mm512_set1_ps(top);
            let mut sum = _mm512_setzero_ps();
            for at in (0..s).step_by(16) {
                let m = lanes((s - at).min(16));
                let e = exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row.as_ptr().add(at)), max));
                sum = _mm512_mask_add_ps(sum, m, sum, e);
                _mm512_mask_storeu_ps(row.as_mut_ptr().add(at), m, e);
            }
            (stats[r], stats[n_rep + r]) = (top, _mm512_reduce_add_ps(sum));
        }
        // Weighted sums of the values, a block at a time; each head's output stays in
        // registers through a block, its additions in key order.
        out.fill(0.0);
        for j0 in (0..s).step_by(BLOCK) {
            let n = BLOCK.min(s - j0);
            widen::<L, T>(value, j0, n, ahead(j0, n), &mut buf);
            for r in 0..n_rep {
                let o = out.as_mut_ptr().add(r * hd);
                let mut acc: [__m512; L] = std::array::from_fn(|l| _mm512_loadu_ps(o.add(16 * l)));
                for i in 0..n {
                    let p = _mm512_set1_ps(scores[r * s + j0 + i]);
                    for (l, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(
                            p,
                            _mm512_loadu_ps(buf.as_ptr().add(i * hd + 16 * l)),
                            *a,
                        );
                    }
                }
                for (l, a) in acc.iter().enumerate() {
                    _mm512_storeu_ps(o.add(16 * l), *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `decode_attention` against the tensor formula on `filled` of `cap` cached positions, the
    /// cache stored as `dtype` (the formula reads the same stored values, widened).
    fn check_as(dtype: DType, heads: usize, kv: usize, hd: usize, cap: usize, filled: usize) {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (1, heads, 1, hd), &dev).unwrap();
        // A strided view of a partly filled buffer, as KvCache gives.
        let kbuf =
            Tensor::randn(0f32, 1.0, (1, kv, cap, hd), &dev).unwrap().to_dtype(dtype).unwrap();
        let vbuf =
            Tensor::randn(0f32, 1.0, (1, kv, cap, hd), &dev).unwrap().to_dtype(dtype).unwrap();
        let (k, v) = (kbuf.narrow(2, 0, filled).unwrap(), vbuf.narrow(2, 0, filled).unwrap());
        let got = decode_attention(&q, &k, &v, 0.25).unwrap().unwrap();
        let (k, v) = (k.to_dtype(DType::F32).unwrap(), v.to_dtype(DType::F32).unwrap());
        let qg = q.reshape((1, kv, heads / kv, hd)).unwrap();
        let att = (qg.matmul(&k.contiguous().unwrap().t().unwrap()).unwrap() * 0.25).unwrap();
        let att = candle_nn::ops::softmax_last_dim(&att).unwrap();
        let want =
            att.matmul(&v.contiguous().unwrap()).unwrap().reshape((1, 1, heads * hd)).unwrap();
        let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{dtype:?}: {d}");
    }

    fn check(heads: usize, kv: usize, hd: usize, cap: usize, filled: usize) {
        check_as(DType::F32, heads, kv, hd, cap, filled);
        check_as(DType::F16, heads, kv, hd, cap, filled);
    }

    #[test]
    fn equals_the_tensor_formula_with_grouped_heads_and_strided_cache() {
        check(6, 2, 16, 10, 7);
    }

    #[test]
    fn heads_in_parallel_over_a_long_cache_give_the_same_result() {
        const { assert!(6 * 300 * 64 >= PARALLEL_FROM) };
        check(6, 2, 64, 320, 300);
    }

    #[test]
    fn sixteen_horizontal_sums_at_once_land_in_key_order() {
        if !avx512() {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            let data: Vec<f32> = (0..256).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
            // SAFETY: AVX-512F was detected above; every load reads 16 floats of `data`.
            let got = unsafe {
                let v: [__m512; 16] =
                    std::array::from_fn(|i| _mm512_loadu_ps(data.as_ptr().add(16 * i)));
                let mut out = [0f32; 16];
                _mm512_storeu_ps(out.as_mut_ptr(), avx512::sum_lanes(v));
                out
            };
            let want: Vec<f32> = data.chunks(16).map(|c| c.iter().sum()).collect();
            assert_eq!(got.to_vec(), want);
        }
    }

    #[test]
    fn head_size_128_with_a_partial_last_vector_of_scores() {
        check(4, 2, 128, 40, 37);
        check(3, 1, 64, 5, 1);
        // Whole blocks of keys and a partial one, three query heads per KV head (SmolLM2's).
        check(9, 3, 64, 256, 48);
        check(9, 3, 64, 256, 53);
    }
}
