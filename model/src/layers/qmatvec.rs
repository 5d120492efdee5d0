//! SIMD matrix-vector products for Q4_1 and Q8_0 weights, the formats of the default SmolLM2
//! GGUF (Q4_1 projections, a Q8_0 embedding that is also the output head).
//!
//! Candle has only a scalar kernel for Q4_1, and its Q8_0 kernel neither uses VNNI nor shares a
//! weight read between a few rows; decoding a small model is bound by memory traffic, and a
//! batched decoding step by how often each weight block is unpacked. Activations are quantized
//! to 8 bits per block of 32 (with their block sum, for Q4_1's minimum), as in llama.cpp's
//! `q4_1 x q8_1` and `q8_0 x q8_0` dot products. With AVX-512 VNNI the weights are repacked
//! sixteen rows at a time ([`super::qpacked`]); elsewhere the AVX2 kernels here read them as
//! stored. Several rows (a batched decoding step) share one pass over the weight, each block
//! unpacked once for all.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::qpacked::{self, Packed, LANES};

/// Weights (and activations) per quantization block.
pub(crate) const QK: usize = 32;
/// Q4_1: f16 scale, f16 minimum, 16 bytes of nibbles.
const BLOCK_BYTES: usize = 20;
/// Q8_0: f16 scale, 32 signed bytes.
const Q8_0_BYTES: usize = 34;

/// The weight formats these kernels read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Format {
    Q4_1,
    Q8_0,
}

impl Format {
    pub(crate) fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4_1 => Some(Self::Q4_1),
            GgmlDType::Q8_0 => Some(Self::Q8_0),
            _ => None,
        }
    }

    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Self::Q4_1 => BLOCK_BYTES,
            Self::Q8_0 => Q8_0_BYTES,
        }
    }
}

/// One row of activations quantized per block of 32: scale, scale x sum, 128 x sum, values.
#[derive(Clone, Copy)]
pub(crate) struct Q8Row<'a> {
    pub(crate) d: &'a [f32],
    pub(crate) s: &'a [f32],
    /// `128 * sum` per block: what Q8_0's packed weights, stored plus 128, add to a block's sum.
    pub(crate) offset: &'a [i32],
    pub(crate) q: &'a [i8],
}

/// Rows of activations quantized per block of 32, held in four buffers for all rows (one
/// allocation each per product, where a buffer per row and field took a fifth of a serving
/// step's quantization time).
pub(crate) struct Q8Rows {
    k: usize,
    d: Vec<f32>,
    s: Vec<f32>,
    offset: Vec<i32>,
    q: Vec<i8>,
}

impl Q8Rows {
    /// The rows of `xs` `(m, k)` quantized: in parallel from [`PARALLEL_ROWS`] rows, each row
    /// the same way either way.
    pub(crate) fn quantize(xs: &[f32], k: usize) -> Q8Rows {
        let (m, nb) = (xs.len() / k, k / QK);
        let mut rows = Q8Rows {
            k,
            d: vec![0.0; m * nb],
            s: vec![0.0; m * nb],
            offset: vec![0; m * nb],
            q: vec![0; m * k],
        };
        let outs: Vec<RowMut> = (rows.q.chunks_exact_mut(k).zip(rows.d.chunks_exact_mut(nb)))
            .zip(rows.s.chunks_exact_mut(nb).zip(rows.offset.chunks_exact_mut(nb)))
            .map(|((q, d), (s, offset))| RowMut { d, s, offset, q })
            .collect();
        if m >= PARALLEL_ROWS {
            xs.par_chunks_exact(k).zip(outs).for_each(|(x, out)| quantize_row(x, out));
        } else {
            xs.chunks_exact(k).zip(outs).for_each(|(x, out)| quantize_row(x, out));
        }
        rows
    }

    /// Every row.
    pub(crate) fn rows(&self) -> Vec<Q8Row<'_>> {
        let nb = self.k / QK;
        (0..self.q.len() / self.k.max(1))
            .map(|j| Q8Row {
                d: &self.d[j * nb..][..nb],
                s: &self.s[j * nb..][..nb],
                offset: &self.offset[j * nb..][..nb],
                q: &self.q[j * self.k..][..self.k],
            })
            .collect()
    }
}

/// Where one row's quantization goes.
struct RowMut<'a> {
    d: &'a mut [f32],
    s: &'a mut [f32],
    offset: &'a mut [i32],
    q: &'a mut [i8],
}

impl RowMut<'_> {
    /// Block `b`'s scale and the sum of its quantized values.
    #[inline(always)]
    fn set(&mut self, b: usize, d: f32, sum: i32) {
        self.d[b] = d;
        self.s[b] = d * sum as f32;
        self.offset[b] = 128 * sum;
    }
}

fn quantize_row(x: &[f32], out: RowMut<'_>) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        // SAFETY: both features were detected at run time.
        return unsafe { quantize_row_avx512(x, out) };
    }
    quantize_row_any(x, out)
}

/// From this many rows on, rows are quantized in parallel (a prompt's prefill). On one thread,
/// quantizing a projection's input took a quarter of the time of its (parallel) product in a
/// prefill profile, with the other core idle; in parallel, a 512-token prompt prefilled
/// 1.27-1.41x faster (`bench generate --prompt-tokens 512`, three alternating pairs: 694-835 vs
/// 538-591 tok/s). A decoding step's few rows take less time to quantize than to hand to the
/// other thread: on a 2-vCPU Xeon, `bench serve`'s sustained phase spent 0.85 ms a step
/// quantizing in parallel from 4 rows and 0.68 ms on one thread (0.42 since the rounding's sign
/// stopped calling out of line, see [`quantize_row_avx512`]).
const PARALLEL_ROWS: usize = 64;

/// [`quantize_row_any`] in AVX-512 intrinsics, a block of 32 values in two vectors: the same
/// maximum, scale and reciprocal, and the same rounding (to nearest, halves away from zero, as
/// `f32::round`): the same bytes. Compiled from the portable loop, the rounding stayed scalar and
/// quantization took 7% of an 8-row decoding step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn quantize_row_avx512(x: &[f32], mut out: RowMut<'_>) {
    use std::arch::x86_64::*;
    let nb = x.len() / QK;
    assert!(out.q.len() == nb * QK && out.d.len() == nb);
    let (half, one) = (_mm512_set1_ps(0.5), _mm512_set1_ps(1.0));
    let sign = _mm512_set1_ps(-0.0);
    for b in 0..nb {
        // SAFETY: block `b` of 32 values lies inside `x` and inside `out.q` (asserted above).
        unsafe {
            let p = x.as_ptr().add(b * QK);
            let (lo, hi) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            let d = amax / 127.0;
            let id = _mm512_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
            let round = |v: __m512| {
                let y = _mm512_mul_ps(v, id);
                // Truncate, then step one away from zero where the dropped fraction is at least a half.
                let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(y);
                let away =
                    _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(y, t)), half);
                // One with `y`'s sign, in integer ops: `_mm512_and_ps`/`_mm512_or_ps` are
                // AVX-512 DQ, not enabled here, and compiled to two calls with stack spills per
                // value vector (a third of this function's samples).
                let signed = _mm512_and_si512(_mm512_castps_si512(y), _mm512_castps_si512(sign));
                let step = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(one), signed));
                _mm512_cvtps_epi32(_mm512_mask_add_ps(t, away, t, step))
            };
            let (qa, qb) = (round(lo), round(hi));
            let dst = out.q.as_mut_ptr().add(b * QK) as *mut __m128i;
            _mm_storeu_si128(dst, _mm512_cvtepi32_epi8(qa));
            _mm_storeu_si128(dst.add(1), _mm512_cvtepi32_epi8(qb));
            out.set(b, d, _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb)));
        }
    }
}

#[inline(always)]
fn quantize_row_any(x: &[f32], mut out: RowMut<'_>) {
    for (b, chunk) in x.chunks_exact(QK).enumerate() {
        let amax = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (j, v) in chunk.iter().enumerate() {
            let q = (v * id).round() as i8;
            out.q[b * QK + j] = q;
            sum += q as i32;
        }
        out.set(b, d, sum);
    }
}

#[inline]
pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

fn dot_scalar(w: &[u8], x: &Q8Row) -> f32 {
    let mut total = 0f32;
    for (b, blk) in w.chunks_exact(BLOCK_BYTES).enumerate() {
        let (d, m) = (f16_at(blk, 0), f16_at(blk, 2));
        let xq = &x.q[b * QK..(b + 1) * QK];
        let mut acc = 0i32;
        for j in 0..QK / 2 {
            acc += (blk[4 + j] & 0x0F) as i32 * xq[j] as i32
                + (blk[4 + j] >> 4) as i32 * xq[j + QK / 2] as i32;
        }
        total += d * x.d[b] * acc as f32 + m * x.s[b];
    }
    total
}

fn dot_scalar_q8_0(w: &[u8], x: &Q8Row) -> f32 {
    let mut total = 0f32;
    for (b, blk) in w.chunks_exact(Q8_0_BYTES).enumerate() {
        let xq = &x.q[b * QK..(b + 1) * QK];
        let acc: i32 = blk[2..].iter().zip(xq).map(|(&w, &x)| w as i8 as i32 * x as i32).sum();
        total += f16_at(blk, 0) * x.d[b] * acc as f32;
    }
    total
}

/// One block's 32 nibbles as bytes (low nibbles are weights 0..16, high ones 16..32), and its
/// scale and minimum.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack(blk: &[u8]) -> (std::arch::x86_64::__m256i, f32, f32) {
    use std::arch::x86_64::*;
    // d and m are the block's two leading f16s: one F16C conversion for both.
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]])));
    // SAFETY: `blk` is a whole 20-byte block, so bytes 4..20 are in bounds.
    let qs = unsafe { _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i) };
    let both = _mm256_inserti128_si256(_mm256_castsi128_si256(qs), _mm_srli_epi16(qs, 4), 1);
    let w8 = _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
    (w8, _mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)))
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// The kernel, generic over the 8-bit dot product of 32 unsigned weight and signed activation
/// bytes into eight i32 sums.
macro_rules! q4_1_dot {
    ($name:ident, $features:literal, $dot32:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name(w: &[u8], x: &Q8Row) -> f32 {
            use std::arch::x86_64::*;
            // Two independent accumulators hide the latency of the convert + FMA chain.
            let mut acc = [_mm256_setzero_ps(); 2];
            let mut mins = 0f32;
            for (b, blk) in w.chunks_exact(BLOCK_BYTES).enumerate() {
                let (w8, d, m) = unpack(blk);
                let xq = &x.q[b * QK..(b + 1) * QK];
                // SAFETY: `xq` holds exactly 32 bytes.
                let x8 = unsafe { _mm256_loadu_si256(xq.as_ptr() as *const __m256i) };
                let p: __m256i = $dot32(w8, x8);
                acc[b & 1] =
                    _mm256_fmadd_ps(_mm256_set1_ps(d * x.d[b]), _mm256_cvtepi32_ps(p), acc[b & 1]);
                mins += m * x.s[b];
            }
            hsum(_mm256_add_ps(acc[0], acc[1])) + mins
        }
    };
}

q4_1_dot!(dot_avx2, "avx2,fma,f16c", |w8, x8| _mm256_madd_epi16(
    _mm256_maddubs_epi16(w8, x8),
    _mm256_set1_epi16(1)
));

/// The same kernel over `ROWS` activation rows at once: each weight block is loaded and unpacked
/// once for all of them (what makes a batched decoding step cheaper than `ROWS` matvecs). Every
/// row's arithmetic is exactly that of the one-row kernel, in the same order, so a row's result
/// does not depend on which other rows share the step. The per-block work is written out by a
/// macro, not a closure: a closure is not inlined into a `target_feature` function, and its
/// accumulators would then live in memory instead of registers.
macro_rules! q4_1_dot_rows {
    ($name:ident, $features:literal, $dot32:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name<const ROWS: usize>(w: &[u8], xs: &[Q8Row], out: &mut [f32]) {
            use std::arch::x86_64::*;
            // Blocks go in pairs so that every accumulator index is static and stays in a
            // register: even blocks into `acc0`, odd ones into `acc1`, as in the one-row kernel.
            let mut acc0 = [_mm256_setzero_ps(); ROWS];
            let mut acc1 = [_mm256_setzero_ps(); ROWS];
            let mut mins = [0f32; ROWS];
            macro_rules! step {
                ($b:expr, $acc:ident) => {{
                    let b = $b;
                    let (w8, d, m) = unpack(&w[b * BLOCK_BYTES..(b + 1) * BLOCK_BYTES]);
                    for j in 0..ROWS {
                        let x = &xs[j];
                        // SAFETY: the block's 32 activation bytes are in bounds.
                        let x8 = unsafe {
                            _mm256_loadu_si256(x.q.as_ptr().add(b * QK) as *const __m256i)
                        };
                        let p: __m256i = $dot32(w8, x8);
                        $acc[j] = _mm256_fmadd_ps(
                            _mm256_set1_ps(d * x.d[b]),
                            _mm256_cvtepi32_ps(p),
                            $acc[j],
                        );
                        mins[j] += m * x.s[b];
                    }
                }};
            }
            let nb = w.len() / BLOCK_BYTES;
            let mut b = 0;
            while b + 1 < nb {
                step!(b, acc0);
                step!(b + 1, acc1);
                b += 2;
            }
            if b < nb {
                step!(b, acc0);
            }
            for j in 0..ROWS {
                out[j] = hsum(_mm256_add_ps(acc0[j], acc1[j])) + mins[j];
            }
        }
    };
}

q4_1_dot_rows!(dot_rows_avx2, "avx2,fma,f16c", |w8, x8| _mm256_madd_epi16(
    _mm256_maddubs_epi16(w8, x8),
    _mm256_set1_epi16(1)
));

/// The Q8_0 kernel over `ROWS` rows: signed weights times signed activations, as an unsigned x
/// signed product of `|w|` and `x` carrying `w`'s sign (llama.cpp's trick). Each row's arithmetic
/// is the same whatever `ROWS` is, so one row gives the same bits alone and in a batch.
macro_rules! q8_0_dot_rows {
    ($name:ident, $features:literal, $dot32:expr) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $name<const ROWS: usize>(w: &[u8], xs: &[Q8Row], out: &mut [f32]) {
            use std::arch::x86_64::*;
            let mut acc0 = [_mm256_setzero_ps(); ROWS];
            let mut acc1 = [_mm256_setzero_ps(); ROWS];
            macro_rules! step {
                ($b:expr, $acc:ident) => {{
                    let b = $b;
                    let blk = &w[b * Q8_0_BYTES..(b + 1) * Q8_0_BYTES];
                    let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([
                        blk[0], blk[1],
                    ]) as i32)));
                    // SAFETY: a Q8_0 block is 34 bytes, so bytes 2..34 are in bounds.
                    let wq = unsafe { _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i) };
                    let wabs = _mm256_sign_epi8(wq, wq);
                    for j in 0..ROWS {
                        let x = &xs[j];
                        // SAFETY: the block's 32 activation bytes are in bounds.
                        let x8 = unsafe {
                            _mm256_loadu_si256(x.q.as_ptr().add(b * QK) as *const __m256i)
                        };
                        let p: __m256i = $dot32(wabs, _mm256_sign_epi8(x8, wq));
                        $acc[j] = _mm256_fmadd_ps(
                            _mm256_set1_ps(d * x.d[b]),
                            _mm256_cvtepi32_ps(p),
                            $acc[j],
                        );
                    }
                }};
            }
            let nb = w.len() / Q8_0_BYTES;
            let mut b = 0;
            while b + 1 < nb {
                step!(b, acc0);
                step!(b + 1, acc1);
                b += 2;
            }
            if b < nb {
                step!(b, acc0);
            }
            for j in 0..ROWS {
                out[j] = hsum(_mm256_add_ps(acc0[j], acc1[j]));
            }
        }
    };
}

q8_0_dot_rows!(q8_0_rows_avx2, "avx2,fma,f16c", |w8, x8| _mm256_madd_epi16(
    _mm256_maddubs_epi16(w8, x8),
    _mm256_set1_epi16(1)
));

/// Which kernel this CPU runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Scalar,
    Avx2,
}

fn kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return Kernel::Avx2;
        }
    }
    Kernel::Scalar
}

/// Rows handled together by the multi-row kernel.
const ROW_GROUP: usize = 4;

/// `out[j] = w . xs[j]` for every row, groups of `ROW_GROUP` rows sharing each weight read.
fn dot_rows(format: Format, w: &[u8], xs: &[Q8Row], out: &mut [f32], kernel: Kernel) {
    if format == Format::Q8_0 {
        return q8_0_dot_rows(w, xs, out, kernel);
    }
    let mut groups = xs.chunks_exact(ROW_GROUP).zip(out.chunks_exact_mut(ROW_GROUP));
    for (x, o) in &mut groups {
        match kernel {
            // SAFETY: `kernel()` picked it only after detecting its features at run time.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { dot_rows_avx2::<ROW_GROUP>(w, x, o) },
            _ => x.iter().zip(o.iter_mut()).for_each(|(x, o)| *o = dot_scalar(w, x)),
        }
    }
    let done = xs.len() / ROW_GROUP * ROW_GROUP;
    for (x, o) in xs[done..].iter().zip(&mut out[done..]) {
        *o = dot(w, x, kernel);
    }
}

/// [`dot_rows`] for Q8_0: groups of `ROW_GROUP`, then the rest one by one, all through the same
/// kernel body.
fn q8_0_dot_rows(w: &[u8], xs: &[Q8Row], out: &mut [f32], kernel: Kernel) {
    let done = xs.len() / ROW_GROUP * ROW_GROUP;
    for (x, o) in xs.chunks_exact(ROW_GROUP).zip(out.chunks_exact_mut(ROW_GROUP)) {
        match kernel {
            // SAFETY: `kernel()` picked it only after detecting its features at run time.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { q8_0_rows_avx2::<ROW_GROUP>(w, x, o) },
            _ => x.iter().zip(o.iter_mut()).for_each(|(x, o)| *o = dot_scalar_q8_0(w, x)),
        }
    }
    for (x, o) in xs[done..].chunks(1).zip(out[done..].chunks_mut(1)) {
        match kernel {
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { q8_0_rows_avx2::<1>(w, x, o) },
            _ => o[0] = dot_scalar_q8_0(w, &x[0]),
        }
    }
}

fn dot(w: &[u8], x: &Q8Row, kernel: Kernel) -> f32 {
    match kernel {
        // SAFETY: `kernel()` picked it only after detecting its features at run time.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { dot_avx2(w, x) },
        _ => dot_scalar(w, x),
    }
}

/// `x @ W^T` for a Q4_1 or Q8_0 `W` `(n, k)` and an f32 `x` `(..., k)` on the CPU, or `None`
/// when these kernels do not apply (another type or device).
pub fn quantized_matmul(x: &Tensor, w: &Arc<QTensor>) -> candle_core::Result<Option<Tensor>> {
    let Some(format) = Format::of(w.dtype()) else { return Ok(None) };
    if !x.device().is_cpu() || !w.device().is_cpu() {
        return Ok(None);
    }
    let (n, k) = w.shape().dims2()?;
    if k % QK != 0 || x.dim(candle_core::D::Minus1)? != k {
        return Ok(None);
    }
    let x32 = x.to_dtype(candle_core::DType::F32)?;
    let quantized = super::bf16_gemm::with_f32(&x32, |xs| Ok(Q8Rows::quantize(xs, k)))?;
    let rows = quantized.rows();
    let out = match qpacked::packed(w)? {
        Some(p) => packed_product(&p, &rows),
        None => stored_product(format, &w.data()?, n, k, &rows),
    };
    let mut shape = x.dims().to_vec();
    *shape.last_mut().expect("rank >= 1") = n;
    Ok(Some(Tensor::from_vec(out, shape, &Device::Cpu)?))
}

/// A pointer the threads of one product write through, each to its own columns.
#[derive(Clone, Copy)]
struct Columns(*mut f32);
// SAFETY: shared only by `packed_product`, whose groups write disjoint columns.
unsafe impl Send for Columns {}
unsafe impl Sync for Columns {}

impl Columns {
    /// The address `offset` values on (a method, so that closures capture the whole `Columns`).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `rows @ W^T` `(m, n)` over the packed weight: groups of sixteen outputs in parallel, each
/// writing its columns of the row-major result in place (no zeroed buffer, no reordering copy:
/// those were a twentieth of a prefill step).
fn packed_product(p: &Packed, rows: &[Q8Row]) -> Vec<f32> {
    let (m, n) = (rows.len(), p.rows());
    let whole = n / LANES;
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let dst = Columns(out.as_mut_ptr());
    let per = whole.div_ceil(rayon::current_num_threads() * 4).max(1);
    (0..whole).into_par_iter().with_min_len(per).for_each(|g| {
        // SAFETY: group `g` writes columns `16 g .. 16 g + 16` of every row, inside `out`'s
        // capacity and apart from every other group's.
        unsafe { p.group(g, rows, dst.at(g * LANES), n) };
    });
    if whole < p.groups() {
        // The last group's padding lanes would run into the next row: through a buffer.
        let mut last = vec![0f32; m * LANES];
        // SAFETY: `last` holds `m` rows of sixteen.
        unsafe { p.group(whole, rows, last.as_mut_ptr(), LANES) };
        let lanes = n - whole * LANES;
        for (j, src) in last.chunks_exact(LANES).enumerate() {
            // SAFETY: the row's last `lanes` columns, inside the capacity; no thread runs now.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), dst.at(j * n + whole * LANES), lanes)
            };
        }
    }
    // SAFETY: every one of the `m * n` values was written above.
    unsafe { out.set_len(m * n) };
    out
}

/// `rows @ W^T` `(m, n)` reading the GGUF blocks as stored.
fn stored_product(format: Format, data: &[u8], n: usize, k: usize, rows: &[Q8Row]) -> Vec<f32> {
    let kernel = kernel();
    let row_bytes = k / QK * format.block_bytes();
    let m = rows.len();
    // One parallel pass over the weight for all rows: `by_col[r * m + j]` is row j, output r.
    let mut by_col = vec![0f32; m * n];
    let chunk = n.div_ceil(rayon::current_num_threads() * 4).max(16);
    by_col.par_chunks_mut(chunk * m).enumerate().for_each(|(c, dst)| {
        for (i, o) in dst.chunks_exact_mut(m).enumerate() {
            let r = c * chunk + i;
            dot_rows(format, &data[r * row_bytes..(r + 1) * row_bytes], rows, o, kernel);
        }
    });
    if m == 1 {
        return by_col;
    }
    let mut out = vec![0f32; m * n];
    for (r, col) in by_col.chunks_exact(m).enumerate() {
        for (j, v) in col.iter().enumerate() {
            out[j * n + r] = *v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Products of `x` `(m, k)` by the `(n, k)` weight through every kernel this CPU has,
    /// against the scalar reference on the stored blocks.
    fn assert_kernels_agree(dtype: GgmlDType, n: usize, k: usize, m: usize) {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.1, (n, k), &dev).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
        let quantized = Q8Rows::quantize(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), k);
        let rows = quantized.rows();
        let data = q.data().unwrap();
        let format = Format::of(dtype).unwrap();
        let reference = stored_product(format, &data, n, k, &rows);
        let scalar: Vec<f32> = (0..m * n)
            .map(|i| {
                let (j, r) = (i / n, i % n);
                let blk =
                    &data[r * k / QK * format.block_bytes()..][..k / QK * format.block_bytes()];
                if format == Format::Q4_1 {
                    dot_scalar(blk, &rows[j])
                } else {
                    dot_scalar_q8_0(blk, &rows[j])
                }
            })
            .collect();
        let mut candidates = vec![("stored", reference)];
        if let Some(p) = Packed::new(format, &data, n, k) {
            candidates.push(("packed", packed_product(&p, &rows)));
        }
        for (name, got) in candidates {
            for (i, (g, r)) in got.iter().zip(&scalar).enumerate() {
                assert!(
                    (g - r).abs() < 1e-4 * r.abs().max(1.0),
                    "{dtype:?} {name} [{i}]: {g} vs {r}"
                );
            }
        }
        let exact = x.matmul(&q.dequantize(&dev).unwrap().t().unwrap()).unwrap();
        let got = quantized_matmul(&x, &Arc::new(q)).unwrap().unwrap();
        let diff =
            (exact - &got).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = got.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 0.02 * scale, "{dtype:?}: diff {diff} of {scale}");
    }

    #[test]
    fn q4_1_kernels_match_the_scalar_dot_and_the_dequantized_product() {
        // 70 outputs: four whole groups of sixteen and a padded one; 11 rows: a tile of 8 and one of 3.
        assert_kernels_agree(GgmlDType::Q4_1, 70, 96, 11);
        assert_kernels_agree(GgmlDType::Q4_1, 70, 96, 1);
        assert_kernels_agree(GgmlDType::Q4_1, 64, 96, 21);
    }

    #[test]
    fn q8_0_kernels_match_the_scalar_dot_and_the_dequantized_product() {
        assert_kernels_agree(GgmlDType::Q8_0, 70, 96, 11);
        assert_kernels_agree(GgmlDType::Q8_0, 70, 96, 1);
    }

    #[test]
    fn the_avx512_quantizer_gives_the_bytes_of_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            // Random blocks, a zero block, and a block whose scale is 1 with exact halves to round.
            let mut x =
                Tensor::randn(0f32, 1.0, 32 * 6, &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
            x[64..96].fill(0.0);
            let halves = [127.0, 0.5, -0.5, 1.5, -2.5, 126.5, -126.5, 3.49999];
            for (i, v) in x[96..128].iter_mut().enumerate() {
                *v = halves[i % halves.len()];
            }
            let quantized = |avx512: bool| {
                let mut rows = Q8Rows {
                    k: x.len(),
                    d: vec![0.0; 6],
                    s: vec![0.0; 6],
                    offset: vec![0; 6],
                    q: vec![0; x.len()],
                };
                let out = RowMut {
                    d: &mut rows.d,
                    s: &mut rows.s,
                    offset: &mut rows.offset,
                    q: &mut rows.q,
                };
                // SAFETY: both features were detected above.
                if avx512 {
                    unsafe { quantize_row_avx512(&x, out) }
                } else {
                    quantize_row_any(&x, out)
                }
                rows
            };
            let (fast, slow) = (quantized(true), quantized(false));
            assert_eq!(fast.q, slow.q);
            assert_eq!(fast.offset, slow.offset);
            assert_eq!(fast.d, slow.d);
            assert_eq!(fast.s, slow.s);
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_any_batch() {
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = Tensor::randn(0f32, 0.1, (40, 64), &dev).unwrap();
            let q = Arc::new(QTensor::quantize(&w, dtype).unwrap());
            let x = Tensor::randn(0f32, 1.0, (13, 64), &dev).unwrap();
            let batch: Vec<Vec<f32>> =
                quantized_matmul(&x, &q).unwrap().unwrap().to_vec2().unwrap();
            for (j, row) in batch.iter().enumerate() {
                let alone: Vec<Vec<f32>> = quantized_matmul(&x.narrow(0, j, 1).unwrap(), &q)
                    .unwrap()
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                assert_eq!(&alone[0], row, "{dtype:?} row {j}");
            }
        }
    }
}
