//! `A @ B` with bfloat16 inputs and f32 accumulation on AVX-512 BF16 (`vdpbf16ps`), which
//! multiplies twice as many pairs per cycle as f32 FMA on the same core: the mixed-precision
//! product that training (and opt-in scoring) uses for the frozen base, as PyTorch autocast does.
//!
//! `B` is packed once per product into panels of `NR` columns in which each pair of rows
//! `(2q, 2q+1)` of a column is one 32-bit lane, the layout `vdpbf16ps` consumes; `A` is rounded
//! to bfloat16 row by row (round to nearest even). Every output element sums its pairs in `k`
//! order whatever the shape or thread count, so results are reproducible bit for bit.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::Cell;

use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;

use super::frozen_matmul::Restore;

thread_local! {
    static SCOPE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the frozen products of many rows (and their input gradients) in bfloat16 with
/// f32 accumulation when `enabled` and the CPU has AVX-512 BF16, in exact f32 otherwise:
/// mixed-precision training, twice the multiply rate of f32 on such a core. LoRA's own
/// matrices, attention and everything else stay f32.
pub fn bf16_products<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    let _restore = Restore(&SCOPE, SCOPE.replace(enabled));
    f()
}

/// Whether frozen products on this thread run in bfloat16 now.
pub fn active() -> bool {
    SCOPE.get() && available()
}

/// Columns per packed panel: three 16-lane vectors.
const NR: usize = 48;
/// Rows per micro-kernel call.
const MR: usize = 8;

/// Whether this CPU runs the kernels (AVX-512 F, BW and BF16).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether bf16 products beat exact f32 ones on this CPU, measured once per process on a
/// projection of SmolLM2-135M's shape (512 rows, 576 x 1536, B packed each time as training
/// does): on a core whose two f32 FMA ports match `vdpbf16ps` (a Xeon without AMX kernels), f32
/// wins; on AMD Zen 4 bf16 does. Needs a clear margin (10%) so that noise does not flip it.
///
/// The verdict is kept in `~/.cache/medalign/bf16-products` (per user, per machine), so that
/// every process on a machine takes the same products, and a busy moment cannot make two runs
/// of one stage compute differently.
pub fn faster_than_f32() -> bool {
    static FASTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FASTER.get_or_init(|| {
        if !available() {
            return false;
        }
        let file = std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".cache/medalign/bf16-products"));
        if let Some(kept) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            match kept.trim() {
                "faster" => return true,
                "slower" => return false,
                _ => {}
            }
        }
        let faster = measure_speedup() > 1.1;
        if let Some(f) = &file {
            let tmp = f.with_extension(format!("tmp{}", std::process::id()));
            let verdict = if faster { "faster\n" } else { "slower\n" };
            let _ = std::fs::create_dir_all(f.parent().unwrap_or(f))
                .and_then(|()| std::fs::write(&tmp, verdict))
                .and_then(|()| std::fs::rename(&tmp, f));
        }
        faster
    })
}

/// f32 time over bf16 time for one projection, best of three each.
fn measure_speedup() -> f64 {
    let (m, k, n) = (512, 576, 1536);
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.01).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.01).collect();
    let best = |f: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let bf16 = best(&|| {
        std::hint::black_box(matmul(&x, m, &PackedB::transposed(&w, n, k)));
    });
    let dev = candle_core::Device::Cpu;
    let (Ok(xt), Ok(wt)) =
        (Tensor::from_slice(&x, (m, k), &dev), Tensor::from_slice(&w, (n, k), &dev))
    else {
        return 0.0;
    };
    let f32 = best(&|| {
        let _ = std::hint::black_box(wt.t().and_then(|wt| xt.matmul(&wt)));
    });
    f32 / bf16
}

/// bfloat16 bits of `x`, rounded to nearest even (what `vcvtne2ps2bf16` does).
fn bf16_bits(x: f32) -> u32 {
    u32::from(half::bf16::from_f32(x).to_bits())
}

/// One 64-byte line of packed pairs, so that every panel row starts on a cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// The right operand `B (k, n)` packed for the kernel.
pub struct PackedB {
    k: usize,
    n: usize,
    /// Pairs of rows, `ceil(k / 2)`.
    kp: usize,
    /// Panel `p`, pair `q`, column `c` at lane `(p * kp + q) * NR + c`.
    data: Vec<Line>,
}

impl PackedB {
    /// `B = W^T` for a row-major `W (n, k)`: the right operand of `x @ W^T`. Each row of `W`
    /// is one column of `B`, its pairs already adjacent.
    pub fn transposed(w: &[f32], n: usize, k: usize) -> Self {
        assert!(available(), "bf16 GEMM: this CPU lacks AVX-512 BF16");
        assert_eq!(w.len(), n * k, "bf16 pack: W is not ({n}, {k})");
        let mut b = Self::zeroed(k, n);
        let kp = b.kp;
        b.panels().enumerate().for_each(|(p, lanes)| {
            // The panel's rows of `W` as pairs (zero rows past `n`), then gathered 16 columns at once.
            let mut pairs = vec![0u32; NR * kp];
            for (c, dst) in pairs.chunks_exact_mut(kp).take(NR.min(n - p * NR)).enumerate() {
                let col = p * NR + c;
                row_pairs(&w[col * k..(col + 1) * k], dst);
            }
            for q in 0..kp {
                for v in 0..NR / 16 {
                    // SAFETY: `available()` holds; lanes `v * 16 + i` of pair `q` lie in `pairs`.
                    unsafe {
                        gather_16(
                            pairs[v * 16 * kp + q..].as_ptr(),
                            kp,
                            lanes[q * NR + v * 16..].as_mut_ptr(),
                        )
                    };
                }
            }
        });
        b
    }

    /// `B = W` for a row-major `W (k, n)`: rows `2q` and `2q + 1` interleave into pair `q`.
    pub fn plain(w: &[f32], k: usize, n: usize) -> Self {
        assert!(available(), "bf16 GEMM: this CPU lacks AVX-512 BF16");
        assert_eq!(w.len(), k * n, "bf16 pack: W is not ({k}, {n})");
        let mut b = Self::zeroed(k, n);
        let kp = b.kp;
        b.panels().enumerate().for_each(|(p, lanes)| {
            let cols = NR.min(n - p * NR);
            for q in 0..kp {
                let even = &w[2 * q * n + p * NR..][..cols];
                let odd = (2 * q + 1 < k).then(|| &w[(2 * q + 1) * n + p * NR..][..cols]);
                let dst = &mut lanes[q * NR..][..cols];
                let mut c = 0;
                if let Some(odd) = odd {
                    while c + 16 <= cols {
                        // SAFETY: `available()` holds; 16 floats read from each row, 16 lanes written.
                        unsafe {
                            interleave_16(
                                even[c..].as_ptr(),
                                odd[c..].as_ptr(),
                                dst[c..].as_mut_ptr(),
                            )
                        };
                        c += 16;
                    }
                }
                for c in c..cols {
                    dst[c] = bf16_bits(even[c]) | (odd.map_or(0, |o| bf16_bits(o[c])) << 16);
                }
            }
        });
        b
    }

    fn zeroed(k: usize, n: usize) -> Self {
        let kp = k.div_ceil(2);
        Self { k, n, kp, data: vec![Line([0; 16]); n.div_ceil(NR) * kp * NR / 16] }
    }

    /// The lanes of each panel, in parallel.
    fn panels(&mut self) -> impl IndexedParallelIterator<Item = &mut [u32]> {
        let lines = (self.kp * NR / 16).max(1);
        self.data.par_chunks_mut(lines).map(|panel| {
            // SAFETY: `Line` is `repr(C)` over `[u32; 16]`: 64 bytes, no padding.
            unsafe {
                std::slice::from_raw_parts_mut(panel.as_mut_ptr().cast::<u32>(), panel.len() * 16)
            }
        })
    }

    /// `B = W^T` for an f32 matrix `W (n, k)`.
    pub fn of_transposed(w: &Tensor) -> candle_core::Result<Self> {
        let (n, k) = w.dims2()?;
        with_f32(w, |w| Ok(Self::transposed(w, n, k)))
    }

    /// `B = W` for an f32 matrix `W (k, n)`.
    pub fn of_plain(w: &Tensor) -> candle_core::Result<Self> {
        let (k, n) = w.dims2()?;
        with_f32(w, |w| Ok(Self::plain(w, k, n)))
    }

    /// Rows of `B`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Columns of `B`.
    pub fn n(&self) -> usize {
        self.n
    }
}

/// `x (rows, k) @ B` for an f32 matrix `x`.
pub fn product(x: &Tensor, b: &PackedB) -> candle_core::Result<Tensor> {
    let rows = x.dim(0)?;
    let out = with_f32(x, |x| Ok(matmul(x, rows, b)))?;
    Tensor::from_vec(out, (rows, b.n), x.device())
}

/// `a @ b` over the leading axes of `a` `(.., m, k)` and `b` `(.., k, n)` (any strides): one
/// product per matrix. `b` is packed straight from its memory when it is the transpose of a
/// contiguous matrix (`k.t()` in attention), after a copy otherwise.
pub fn batched(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let dims = a.dims().to_vec();
    let r = dims.len();
    let (m, k, n) = (dims[r - 2], dims[r - 1], b.dim(r - 1)?);
    if r < 2 || b.rank() != r || b.dim(r - 2)? != k || dims[..r - 2] != b.dims()[..r - 2] {
        candle_core::bail!("bf16 batched product: shapes {:?} and {:?}", a.dims(), b.dims());
    }
    let count: usize = dims[..r - 2].iter().product();
    let at = a.transpose(r - 2, r - 1)?;
    let a = if !a.is_contiguous() && at.is_contiguous() {
        // The transpose of a contiguous matrix (`p.t()` in attention's backward): a blocked
        // transpose, where candle's strided copy goes element by element.
        Tensor::from_vec(
            with_f32(&at, |t| Ok(transpose(t, count, k, m)))?,
            (count, m, k),
            a.device(),
        )?
    } else {
        a.contiguous()?.reshape((count, m, k))?
    };
    let bt = b.transpose(r - 2, r - 1)?;
    let (b, transposed) = if bt.is_contiguous() {
        (bt.reshape((count, n, k))?, true)
    } else {
        (b.contiguous()?.reshape((count, k, n))?, false)
    };
    let mut out = Vec::with_capacity(count * m * n);
    with_f32(&a, |a| {
        with_f32(&b, |b| {
            for i in 0..count {
                let w = &b[i * k * n..(i + 1) * k * n];
                let packed =
                    if transposed { PackedB::transposed(w, n, k) } else { PackedB::plain(w, k, n) };
                out.extend(matmul(&a[i * m * k..(i + 1) * m * k], m, &packed));
            }
            Ok(())
        })
    })?;
    let mut shape = dims;
    shape[r - 1] = n;
    Tensor::from_vec(out, shape, a.device())
}

/// The `count` row-major `(rows, cols)` matrices of `src`, each transposed to `(cols, rows)`, in
/// tiles that keep both sides' lines in cache; the matrices in parallel.
fn transpose(src: &[f32], count: usize, rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 16;
    let mut dst = vec![0f32; count * rows * cols];
    if dst.is_empty() {
        return dst;
    }
    dst.par_chunks_mut(rows * cols).zip(src.par_chunks(rows * cols)).for_each(|(d, s)| {
        for r0 in (0..rows).step_by(TILE) {
            for c0 in (0..cols).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    for c in c0..(c0 + TILE).min(cols) {
                        d[c * rows + r] = s[r * cols + c];
                    }
                }
            }
        }
    });
    dst
}

/// Matrices of fewer rows stay in f32 in [`matmul_in_scope`]: packing `b` would cost more than
/// the product saves.
const SCOPE_ROWS: usize = 48;

/// `a @ b` for attention's products: in bfloat16 inside a [`bf16_products`] scope when `a` has
/// enough rows per matrix, exact f32 otherwise.
pub fn matmul_in_scope(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let m = a.dim(a.rank().saturating_sub(2))?;
    if active()
        && m >= SCOPE_ROWS
        && a.device().is_cpu()
        && a.dtype() == candle_core::DType::F32
        && b.dtype() == candle_core::DType::F32
    {
        batched(a, b)
    } else {
        a.matmul(b)
    }
}

/// `f` over the f32 elements of `t` in row-major order, without a copy when `t` is contiguous.
pub(crate) fn with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(v)) = &*storage else {
        candle_core::bail!("expected an f32 cpu tensor, got {:?}", t.dtype())
    };
    f(&v[layout.start_offset()..layout.start_offset() + layout.shape().elem_count()])
}

/// `A (m, k) @ B` as a row-major `(m, n)` f32 vector. Panics unless [`available`].
pub fn matmul(a: &[f32], m: usize, b: &PackedB) -> Vec<f32> {
    assert!(available(), "bf16 GEMM: this CPU lacks AVX-512 BF16");
    assert_eq!(a.len(), m * b.k, "bf16 GEMM: A is not ({m}, {})", b.k);
    let (n, kp) = (b.n, b.kp);
    let mut out = vec![0f32; m * n];
    if m == 0 || n == 0 {
        return out;
    }
    // Row blocks small enough that a block of A (bf16) and a panel of B stay in L2, and that both
    // threads get work on a few hundred rows.
    let threads = rayon::current_num_threads().max(1);
    let block = m.div_ceil(2 * threads).next_multiple_of(MR).clamp(MR, 128);
    out.par_chunks_mut(block * n).enumerate().for_each(|(i, out)| {
        let r0 = i * block;
        let rows = out.len() / n;
        let a16 = to_pairs(&a[r0 * b.k..(r0 + rows) * b.k], rows, b.k);
        for p in 0..n.div_ceil(NR) {
            let panel = &b.data[p * kp * NR / 16..];
            let cols = NR.min(n - p * NR);
            for r in (0..rows).step_by(MR) {
                let mr = MR.min(rows - r);
                // SAFETY: `available()` holds; `a16` has `rows * kp` lanes, the panel `kp * NR`,
                // and `out` has `rows` rows of `n` with `cols` columns from `p * NR`.
                unsafe {
                    kernel(
                        mr,
                        a16[r * kp..].as_ptr(),
                        kp,
                        panel.as_ptr().cast::<u32>(),
                        out[r * n + p * NR..].as_mut_ptr(),
                        n,
                        cols,
                    );
                }
            }
        }
    });
    out
}

/// Rows of `a (rows, k)` rounded to bfloat16, each pair of columns one lane (zero past `k`).
fn to_pairs(a: &[f32], rows: usize, k: usize) -> Vec<u32> {
    let kp = k.div_ceil(2);
    let mut out = vec![0u32; rows * kp];
    for (src, dst) in a.chunks_exact(k).zip(out.chunks_exact_mut(kp)) {
        row_pairs(src, dst);
    }
    out
}

/// One row rounded to bfloat16 pairs; `dst` holds `ceil(src.len() / 2)` lanes.
fn row_pairs(src: &[f32], dst: &mut [u32]) {
    let k = src.len();
    let whole = k / 32 * 32;
    // SAFETY: the callers' constructors checked `available()`; 32 floats read, 16 lanes written.
    unsafe {
        for j in (0..whole).step_by(32) {
            round_32(src[j..].as_ptr(), dst[j / 2..].as_mut_ptr());
        }
    }
    for j in (whole..k).step_by(2) {
        let hi = if j + 1 < k { bf16_bits(src[j + 1]) } else { 0 };
        dst[j / 2] = bf16_bits(src[j]) | (hi << 16);
    }
}

#[cfg(target_arch = "x86_64")]
/// `dst[i] = src[i * stride]` for 16 lanes.
#[target_feature(enable = "avx512f")]
unsafe fn gather_16(src: *const u32, stride: usize, dst: *mut u32) {
    let s = stride as i32;
    let index = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(s),
    );
    _mm512_storeu_si512(dst.cast(), _mm512_i32gather_epi32::<4>(index, src.cast()));
}

#[cfg(target_arch = "x86_64")]
/// Lanes `(even[i], odd[i])` for 16 columns.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave_16(even: *const f32, odd: *const f32, dst: *mut u32) {
    // bf16 of `even` in elements 0..16 and of `odd` in 16..32, then element i of each side by side.
    let both: __m512i =
        std::mem::transmute(_mm512_cvtne2ps_pbh(_mm512_loadu_ps(odd), _mm512_loadu_ps(even)));
    let index = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
        19, 3, 18, 2, 17, 1, 16, 0,
    );
    _mm512_storeu_si512(dst.cast(), _mm512_permutexvar_epi16(index, both));
}

/// 32 floats rounded to bfloat16, as 16 lanes of pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn round_32(src: *const f32, dst: *mut u32) {
    let lo = _mm512_loadu_ps(src);
    let hi = _mm512_loadu_ps(src.add(16));
    let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
    _mm512_storeu_si512(dst.cast(), v);
}

#[cfg(target_arch = "x86_64")]
/// `mr` (1..=8) rows of output, one panel, every pair of `k`: only the vectors that hold
/// `cols` columns are multiplied (a 64-wide `B`'s second panel is a third full).
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(
    mr: usize,
    a: *const u32,
    lda: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    macro_rules! by_rows {
        ($v:literal) => {
            match mr {
                8 => rows::<8, $v>(a, lda, b, c, ldc, cols),
                7 => rows::<7, $v>(a, lda, b, c, ldc, cols),
                6 => rows::<6, $v>(a, lda, b, c, ldc, cols),
                5 => rows::<5, $v>(a, lda, b, c, ldc, cols),
                4 => rows::<4, $v>(a, lda, b, c, ldc, cols),
                3 => rows::<3, $v>(a, lda, b, c, ldc, cols),
                2 => rows::<2, $v>(a, lda, b, c, ldc, cols),
                _ => rows::<1, $v>(a, lda, b, c, ldc, cols),
            }
        };
    }
    match cols.div_ceil(16) {
        3 => by_rows!(3),
        2 => by_rows!(2),
        _ => by_rows!(1),
    }
}

#[cfg(target_arch = "x86_64")]
/// `R` rows by `V` sixteen-column vectors of one panel.
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline]
unsafe fn rows<const R: usize, const V: usize>(
    a: *const u32,
    lda: usize,
    b: *const u32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for q in 0..lda {
        let bq = b.add(q * NR);
        let bv: [__m512bh; V] =
            std::array::from_fn(|v| std::mem::transmute(_mm512_load_si512(bq.add(16 * v).cast())));
        for (r, acc) in acc.iter_mut().enumerate() {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + q) as i32));
            for v in 0..V {
                acc[v] = _mm512_dpbf16_ps(acc[v], av, bv[v]);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let row = c.add(r * ldc);
        for (v, &x) in acc.iter().enumerate() {
            let left = cols.saturating_sub(v * 16).min(16);
            if left == 16 {
                _mm512_storeu_ps(row.add(v * 16), x);
            } else if left > 0 {
                _mm512_mask_storeu_ps(row.add(v * 16), ((1u32 << left) - 1) as u16, x);
            }
        }
    }
}

// Every entry point asserts `available()`, which is false off x86_64: these are never called.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn gather_16(_: *const u32, _: usize, _: *mut u32) {
    unreachable!("bf16 kernels need x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn interleave_16(_: *const f32, _: *const f32, _: *mut u32) {
    unreachable!("bf16 kernels need x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn round_32(_: *const f32, _: *mut u32) {
    unreachable!("bf16 kernels need x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn kernel(
    _: usize,
    _: *const u32,
    _: usize,
    _: *const u32,
    _: *mut f32,
    _: usize,
    _: usize,
) {
    unreachable!("bf16 kernels need x86_64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(x: f32) -> f32 {
        half::bf16::from_f32(x).to_f32()
    }

    /// The product of the bfloat16-rounded inputs in f64: what the kernel computes, up to f32
    /// accumulation.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|l| f64::from(round(a[i * k + l])) * f64::from(round(b[l * n + j])))
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn ragged_shapes_match_the_rounded_product_and_both_packings_agree() {
        if !available() {
            return;
        }
        // Odd k (a padded pair), m not a multiple of 8, n not a multiple of 48 or of 16.
        for &(m, k, n) in &[(1, 1, 1), (13, 37, 53), (8, 64, 48), (70, 129, 100), (300, 576, 192)] {
            let a = data(m * k, 1);
            let b = data(k * n, 2);
            let want = reference(&a, &b, m, k, n);
            let got = matmul(&a, m, &PackedB::plain(&b, k, n));
            let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
            let got_t = matmul(&a, m, &PackedB::transposed(&bt, n, k));
            assert_eq!(got, got_t, "({m}, {k}, {n})");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-5 * (k as f32).sqrt(),
                    "({m}, {k}, {n}) [{i}]: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn batched_products_of_transposed_and_strided_operands_equal_each_matrix_alone() {
        if !available() {
            return;
        }
        let dev = candle_core::Device::Cpu;
        let (g, m, k, n) = (3, 50, 20, 33);
        let a = Tensor::from_vec(data(g * m * k, 5), (g, m, k), &dev).unwrap();
        let kt = Tensor::from_vec(data(g * n * k, 6), (g, n, k), &dev).unwrap();
        let each = |b: &Tensor| -> Vec<f32> {
            (0..g)
                .flat_map(|i| {
                    let bi = b
                        .get(i)
                        .unwrap()
                        .contiguous()
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    matmul(
                        &a.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                        m,
                        &PackedB::plain(&bi, k, n),
                    )
                })
                .collect()
        };
        // `k.t()` packs from the keys' own memory; a plain contiguous `b` the other way.
        let b = kt.transpose(1, 2).unwrap();
        assert_eq!(
            batched(&a, &b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            each(&b)
        );
        let b = b.contiguous().unwrap();
        assert_eq!(batched(&a, &b).unwrap().dims(), &[g, m, n]);
        assert_eq!(
            batched(&a, &b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            each(&b)
        );
        // Outside a scope, and for few rows, the product is candle's f32 one.
        let exact = a.matmul(&b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            matmul_in_scope(&a, &b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            exact
        );
        let scoped = bf16_products(true, || matmul_in_scope(&a, &b).unwrap());
        assert_eq!(scoped.flatten_all().unwrap().to_vec1::<f32>().unwrap(), each(&b));
        // A transposed left operand (`p.t()`) is transposed in tiles: the same product as its copy.
        let at =
            Tensor::from_vec(data(g * k * m, 7), (g, k, m), &dev).unwrap().transpose(1, 2).unwrap();
        let copied = batched(&at.contiguous().unwrap(), &b)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(
            batched(&at, &b).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            copied
        );
    }

    #[test]
    fn a_row_does_not_depend_on_the_rows_beside_it() {
        if !available() {
            return;
        }
        let (k, n) = (96, 64);
        let a = data(200 * k, 3);
        let b = PackedB::plain(&data(k * n, 4), k, n);
        let all = matmul(&a, 200, &b);
        let one = matmul(&a[57 * k..58 * k], 1, &b);
        assert_eq!(&all[57 * n..58 * n], &one[..]);
    }
}
