//! Q4_1 and Q8_0 weights repacked for AVX-512 VNNI: sixteen output rows interleaved per block,
//! so that one `vpdpbusd` multiplies four activation bytes (broadcast) into sixteen rows at once
//! and the block scales are applied to sixteen outputs in one vector FMA.
//!
//! The GGUF layout keeps each output row's blocks together, which makes the scale arithmetic of
//! every 32-weight block a scalar chain per row (llama.cpp's `q4_1 x q8_1` dot). Interleaving the
//! rows (the idea of llama.cpp's repacked `q4_0_8x8` CPU kernels) turns it into vector work and
//! lets a batched decoding step unpack each weight block once for all its rows. A row's block
//! sums are exact integers however they are chained, and its float arithmetic is the same
//! operations in the same order whatever other rows share the call, so a sequence decodes to the
//! same bits alone and in a batch.
//!
//! Packed copies are made on first use and kept while their weight lives ([`packed`]); the GGUF
//! blocks stay too (the exact f32 path of scoring and training dequantizes them), so generation
//! holds a quantized weight about twice (some 100 MB more for SmolLM2-135M Q4_1).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use candle_core::quantized::QTensor;

use super::qmatvec::{Format, Q8Row, QK};

/// Output rows interleaved in one group (the lanes of a 512-bit vector of i32).
pub const LANES: usize = 16;
/// Activation rows sharing one pass over a group's weights.
const ROW_TILE: usize = 8;

/// Blocks ahead that the kernels ask the memory for. At eight rows a block's weights are used
/// up in some 80 cycles, and the kernel needs about as many bytes a second as the memory gives:
/// asking 8 blocks ahead made an 8-row decoding step of SmolLM2 about 15% faster on a 2-vCPU EPYC
/// (12.1-14.9 ms against 10.2-12.2 in alternating runs), one row no slower. On a 2-vCPU Xeon,
/// whose one-row step streams the weights faster than the kernel computes eight rows, 16 blocks
/// ahead took a one-row step's products from 2.66-3.14 ms to 2.23-2.70 (`bench serve`'s single
/// stream, three alternating runs, timed inside the step; 32 ahead: 2.37-2.58), eight rows no
/// slower. The last group's prefetches run past its arrays harmlessly (a prefetch never faults;
/// the addresses are computed with `wrapping_add`).
const PREFETCH_AHEAD: usize = 16;

/// A weight in the interleaved layout.
pub struct Packed {
    format: Format,
    /// Output rows (the last group is padded with zero rows).
    rows: usize,
    /// Blocks of 32 per output row.
    blocks: usize,
    /// `scales[(g * blocks + b) * 16 + l]`: block `b`'s scale of row `16 g + l`, the f16 bits
    /// as stored (widened by the kernels: in f32 they were a sixth of a Q4_1 block's bytes
    /// more, and decoding reads every byte of the weights each step).
    scales: Vec<u16>,
    /// Q4_1's block minimums, same indexing (empty for Q8_0).
    mins: Vec<u16>,
    /// Per (group, block): Q4_1, 4 chunks of 64 bytes, chunk `c` lane `l` holding row `l`'s
    /// packed bytes `4c..4c+4` (low nibbles: weights `4c..`, high nibbles: weights `16+4c..`);
    /// Q8_0, 8 chunks of 64 bytes, chunk `c` lane `l` holding row `l`'s weights `4c..4c+4` plus 128.
    qs: Vec<u8>,
}

impl Packed {
    /// Repacks `data` (GGUF blocks of a `(rows, k)` weight), or `None` where this CPU cannot run
    /// the packed kernels: a `Packed` exists only where [`Packed::group`] may run them.
    pub fn new(format: Format, data: &[u8], rows: usize, k: usize) -> Option<Self> {
        if !available() {
            return None;
        }
        let block_bytes = format.block_bytes();
        let chunk_count = if format == Format::Q4_1 { 4 } else { 8 };
        let blocks = k / QK;
        let groups = rows.div_ceil(LANES);
        let group_bytes = chunk_count * 64;
        let mut p = Packed {
            format,
            rows,
            blocks,
            scales: vec![0; groups * blocks * LANES],
            mins: if format == Format::Q4_1 {
                vec![0; groups * blocks * LANES]
            } else {
                Vec::new()
            },
            qs: vec![if format == Format::Q8_0 { 128 } else { 0 }; groups * blocks * group_bytes],
        };
        for r in 0..rows {
            let (g, l) = (r / LANES, r % LANES);
            for b in 0..blocks {
                let blk = &data[(r * blocks + b) * block_bytes..][..block_bytes];
                let at = (g * blocks + b) * LANES + l;
                p.scales[at] = u16::from_le_bytes([blk[0], blk[1]]);
                let dst = &mut p.qs[(g * blocks + b) * group_bytes..][..group_bytes];
                match format {
                    Format::Q4_1 => {
                        p.mins[at] = u16::from_le_bytes([blk[2], blk[3]]);
                        for c in 0..4 {
                            dst[c * 64 + l * 4..][..4].copy_from_slice(&blk[4 + 4 * c..][..4]);
                        }
                    }
                    Format::Q8_0 => {
                        for c in 0..8 {
                            for i in 0..4 {
                                dst[c * 64 + l * 4 + i] =
                                    (blk[2 + 4 * c + i] as i8 as i16 + 128) as u8;
                            }
                        }
                    }
                }
            }
        }
        Some(p)
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Groups of [`LANES`] rows.
    pub fn groups(&self) -> usize {
        self.rows.div_ceil(LANES)
    }

    /// `out[j * stride + l] = W[16 g + l] . xs[j]` for group `g`, every activation row `j` and
    /// every lane `l` of sixteen.
    ///
    /// # Safety
    /// `out + j * stride .. out + j * stride + 16` must be writable for every row `j`.
    pub unsafe fn group(&self, g: usize, xs: &[Q8Row], out: *mut f32, stride: usize) {
        for (t, x) in xs.chunks(ROW_TILE).enumerate() {
            // SAFETY: the caller's rows `t * ROW_TILE ..` of `out`.
            let o = unsafe { out.add(t * ROW_TILE * stride) };
            macro_rules! tile {
                ($($n:literal)*) => {
                    match x.len() {
                        // SAFETY: `Packed::new` builds a `Packed` only where `available()`
                        // found AVX-512 F, BW and VNNI; the caller vouches for `o`'s rows.
                        $($n => unsafe {
                            if self.format == Format::Q4_1 { q4_1_tile::<$n>(self, g, x, o, stride) } else { q8_0_tile::<$n>(self, g, x, o, stride) }
                        },)*
                        _ => unreachable!("tiles hold 1..=8 rows"),
                    }
                };
            }
            tile!(1 2 3 4 5 6 7 8);
        }
    }
}

/// Whether this CPU runs the packed kernels.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

type Cache = HashMap<usize, (Weak<QTensor>, Arc<Packed>)>;

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(Default::default);

/// The packed copy of `w`, made on first use, or `None` where the kernels do not apply (another
/// type, a row width not in whole blocks, no AVX-512 VNNI). Keyed by the weight's allocation: the
/// entry's `Weak` keeps that address from being reused while the entry exists, and entries of
/// dropped weights are removed whenever a new one is added.
pub fn packed(w: &Arc<QTensor>) -> candle_core::Result<Option<Arc<Packed>>> {
    // `Packed::new` checks the CPU too; asking first keeps CPUs without the kernels off the lock.
    let Some(format) = Format::of(w.dtype()).filter(|_| available()) else { return Ok(None) };
    let (rows, k) = w.shape().dims2()?;
    if k % QK != 0 {
        return Ok(None);
    }
    let key = Arc::as_ptr(w) as usize;
    let mut cache = CACHE
        .lock()
        .map_err(|_| candle_core::Error::Msg("packed weights: poisoned lock".into()))?;
    if let Some((_, p)) = cache.get(&key) {
        return Ok(Some(p.clone()));
    }
    let Some(p) = Packed::new(format, &w.data()?, rows, k) else { return Ok(None) };
    let p = Arc::new(p);
    cache.retain(|_, (weak, _)| weak.strong_count() > 0);
    cache.insert(key, (Arc::downgrade(w), p.clone()));
    Ok(Some(p))
}

/// The 64-byte chunks `c...` of a packed block starting at `q`.
#[cfg(target_arch = "x86_64")]
macro_rules! chunks {
    ($q:expr; $($c:literal)*) => {
        [$(_mm512_loadu_si512($q.add($c * 64) as *const _)),*]
    };
}

/// Dot products of chunks with consecutive 4-byte activation words (broadcast to every lane),
/// summed per lane: `chain!(xp, 4; w0, w1)` uses words 4 and 5 of `xp`.
#[cfg(target_arch = "x86_64")]
macro_rules! chain {
    ($xp:expr, $first:expr; $($w:expr),*) => {{
        let mut s = _mm512_setzero_si512();
        let mut i = $first;
        $(
            s = _mm512_dpbusd_epi32(s, $w, _mm512_set1_epi32($xp.add(i).read_unaligned()));
            i += 1;
        )*
        let _ = i;
        s
    }};
}

/// A block's eight dot products with a row's eight activation words, summed per lane: as one
/// chain of eight `vpdpbusd` where the tile's rows give enough independent chains to fill the
/// pipeline (one `vpaddd` less per row and block: an 8-row Q8_0 tile took 21-24 ns a block
/// instead of 24-25 in alternating runs), as two chains of four for one or two rows (whose
/// chains would otherwise wait on each other). The integer sums are the same either way. Reads
/// the tile height `R` of the kernel it is expanded in.
#[cfg(target_arch = "x86_64")]
macro_rules! sums {
    ($xp:expr; $w0:expr, $w1:expr, $w2:expr, $w3:expr, $w4:expr, $w5:expr, $w6:expr, $w7:expr) => {
        if R > 2 {
            chain!($xp, 0; $w0, $w1, $w2, $w3, $w4, $w5, $w6, $w7)
        } else {
            _mm512_add_epi32(chain!($xp, 0; $w0, $w1, $w2, $w3), chain!($xp, 4; $w4, $w5, $w6, $w7))
        }
    };
}

/// Sixteen f16 values (a block's scales or minimums of one group) at `p`, widened.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn halves(p: *const u16) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
}

/// Asks the memory for the block [`PREFETCH_AHEAD`] after the one whose scales are at `at` and
/// whose `bytes` of weights start at `q`: its weights, scales and (Q4_1) minimums, into the next
/// group's where this group ends (the arrays run on).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_ahead(p: &Packed, at: usize, q: *const u8, bytes: usize) {
    use std::arch::x86_64::*;
    let ahead = q.wrapping_add(PREFETCH_AHEAD * bytes) as *const i8;
    for line in (0..bytes).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line));
    }
    _mm_prefetch::<_MM_HINT_T0>(
        p.scales.as_ptr().wrapping_add(at + PREFETCH_AHEAD * LANES) as *const i8
    );
    if !p.mins.is_empty() {
        _mm_prefetch::<_MM_HINT_T0>(
            p.mins.as_ptr().wrapping_add(at + PREFETCH_AHEAD * LANES) as *const i8
        );
    }
}

/// Where a tile's `R` activation rows keep their bytes (as 4-byte words), block scales, scale x
/// sums and Q8_0 offsets: read once per tile instead of through each row's vectors per block.
#[cfg(target_arch = "x86_64")]
struct TileRows<const R: usize> {
    q: [*const i32; R],
    d: [*const f32; R],
    s: [*const f32; R],
    offset: [*const i32; R],
}

#[cfg(target_arch = "x86_64")]
impl<const R: usize> TileRows<R> {
    /// # Safety
    /// `xs` holds at least `R` rows.
    unsafe fn of(xs: &[Q8Row]) -> Self {
        debug_assert!(xs.len() >= R);
        let row = |j: usize| unsafe { xs.get_unchecked(j) };
        TileRows {
            q: std::array::from_fn(|j| row(j).q.as_ptr() as *const i32),
            d: std::array::from_fn(|j| row(j).d.as_ptr()),
            s: std::array::from_fn(|j| row(j).s.as_ptr()),
            offset: std::array::from_fn(|j| row(j).offset.as_ptr()),
        }
    }
}

/// Q4_1 over `R` activation rows for one group: each block's 256 bytes of nibbles are unpacked
/// once for all rows. The minimums' part (`sum_b m_b * s_b`, in block order) takes a second,
/// short pass over the group's minimums, so that the first keeps only one accumulator per row in
/// registers: with both, eight rows spilled to the stack. The sums are the same either way.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
// Row `j` indexes the accumulators and the rows' pointer arrays together.
#[allow(clippy::needless_range_loop)]
unsafe fn q4_1_tile<const R: usize>(
    p: &Packed,
    g: usize,
    xs: &[Q8Row],
    out: *mut f32,
    stride: usize,
) {
    use std::arch::x86_64::*;
    let nb = p.blocks;
    let x = TileRows::<R>::of(xs);
    let mut acc = [_mm512_setzero_ps(); R];
    let low = _mm512_set1_epi8(0x0F);
    for b in 0..nb {
        let at = (g * nb + b) * LANES;
        let d = halves(p.scales.as_ptr().add(at));
        let q = p.qs.as_ptr().add((g * nb + b) * 256);
        prefetch_ahead(p, at, q, 256);
        let raw = chunks!(q; 0 1 2 3);
        macro_rules! nibbles {
            ($($c:literal)*) => {
                ([$(_mm512_and_si512(raw[$c], low)),*], [$(_mm512_and_si512(_mm512_srli_epi16(raw[$c], 4), low)),*])
            };
        }
        let (lo, hi) = nibbles!(0 1 2 3);
        for j in 0..R {
            let xp = x.q[j].add(b * QK / 4);
            let isum = sums!(xp; lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]);
            acc[j] = _mm512_fmadd_ps(
                _mm512_mul_ps(d, _mm512_set1_ps(*x.d[j].add(b))),
                _mm512_cvtepi32_ps(isum),
                acc[j],
            );
        }
    }
    let mut macc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let m = halves(p.mins.as_ptr().add((g * nb + b) * LANES));
        for j in 0..R {
            macc[j] = _mm512_fmadd_ps(m, _mm512_set1_ps(*x.s[j].add(b)), macc[j]);
        }
    }
    for j in 0..R {
        _mm512_storeu_ps(out.add(j * stride), _mm512_add_ps(acc[j], macc[j]));
    }
}

/// Q8_0 over `R` activation rows for one group. The weights are stored plus 128 (unsigned, as
/// `vpdpbusd` wants them); `128 * sum(x)` per block ([`Q8Row::offset`]) takes it back out, exactly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
// Row `j` indexes the accumulators and the rows' pointer arrays together.
#[allow(clippy::needless_range_loop)]
unsafe fn q8_0_tile<const R: usize>(
    p: &Packed,
    g: usize,
    xs: &[Q8Row],
    out: *mut f32,
    stride: usize,
) {
    use std::arch::x86_64::*;
    let nb = p.blocks;
    let x = TileRows::<R>::of(xs);
    let mut acc = [_mm512_setzero_ps(); R];
    for b in 0..nb {
        let at = (g * nb + b) * LANES;
        let d = halves(p.scales.as_ptr().add(at));
        let q = p.qs.as_ptr().add((g * nb + b) * 512);
        prefetch_ahead(p, at, q, 512);
        let w = chunks!(q; 0 1 2 3 4 5 6 7);
        for j in 0..R {
            let xp = x.q[j].add(b * QK / 4);
            let isum = _mm512_sub_epi32(
                sums!(xp; w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]),
                _mm512_set1_epi32(*x.offset[j].add(b)),
            );
            acc[j] = _mm512_fmadd_ps(
                _mm512_mul_ps(d, _mm512_set1_ps(*x.d[j].add(b))),
                _mm512_cvtepi32_ps(isum),
                acc[j],
            );
        }
    }
    for (j, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.add(j * stride), *a);
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn q4_1_tile<const R: usize>(_: &Packed, _: usize, _: &[Q8Row], _: *mut f32, _: usize) {
    unreachable!("packed kernels need x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn q8_0_tile<const R: usize>(_: &Packed, _: usize, _: &[Q8Row], _: *mut f32, _: usize) {
    unreachable!("packed kernels need x86_64")
}
