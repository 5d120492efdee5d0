//! 4-bit NormalFloat (NF4) with double quantization, as in QLoRA (Dettmers et al. 2023,
//! <https://arxiv.org/abs/2305.14314>): each block of `block_size` weights keeps its absolute
//! maximum, and every weight becomes the index of the nearest of 16 levels placed at quantiles of
//! a standard normal. Double quantization stores the block maxima themselves in 8 bits: their mean
//! is subtracted, then each group of 256 maxima keeps one f32 scale and a signed byte per maximum
//! (a linear 8-bit code, where bitsandbytes uses its dynamic 8-bit map), about 0.127 bits a weight
//! instead of 0.5.

use rayon::prelude::*;

use crate::{Error, Result};

/// The 16 NF4 levels (quantiles of N(0, 1) rescaled to [-1, 1], with an exact zero).
pub const NF4_LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Block maxima per scale of the second quantization.
pub const DOUBLE_QUANT_GROUP: usize = 256;

/// The per-block maxima: plain f32, or themselves quantized to 8 bits.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockScales {
    /// One f32 per block.
    F32(Vec<f32>),
    /// `absmax[i] = codes[i] * scales[i / 256] + offset`.
    Double {
        /// One signed byte per block.
        codes: Vec<i8>,
        /// One f32 per group of [`DOUBLE_QUANT_GROUP`] blocks.
        scales: Vec<f32>,
        /// The mean of the maxima, subtracted before quantizing.
        offset: f32,
    },
}

impl BlockScales {
    /// Quantizes `absmax` when `double` is set.
    pub fn new(absmax: Vec<f32>, double: bool) -> Self {
        if !double || absmax.is_empty() {
            return Self::F32(absmax);
        }
        let offset = (absmax.iter().map(|&x| x as f64).sum::<f64>() / absmax.len() as f64) as f32;
        let mut codes = Vec::with_capacity(absmax.len());
        let mut scales = Vec::with_capacity(absmax.len().div_ceil(DOUBLE_QUANT_GROUP));
        for group in absmax.chunks(DOUBLE_QUANT_GROUP) {
            let max = group.iter().map(|&x| (x - offset).abs()).fold(0f32, f32::max);
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales.push(scale);
            codes.extend(
                group.iter().map(|&x| ((x - offset) / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
        Self::Double { codes, scales, offset }
    }

    /// The maximum of block `i`.
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Self::F32(v) => v[i],
            Self::Double { codes, scales, offset } => {
                codes[i] as f32 * scales[i / DOUBLE_QUANT_GROUP] + offset
            }
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::Double { codes, .. } => codes.len(),
        }
    }

    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn size_in_bytes(&self) -> usize {
        match self {
            Self::F32(v) => 4 * v.len(),
            Self::Double { codes, scales, .. } => codes.len() + 4 * scales.len() + 4,
        }
    }
}

/// A row-major matrix `(rows, cols)` in NF4: two 4-bit codes a byte (the first in the low nibble).
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Tensor {
    rows: usize,
    cols: usize,
    block_size: usize,
    codes: Vec<u8>,
    scales: BlockScales,
}

/// The index of the NF4 level nearest to `x` in [-1, 1] (midpoints between sorted levels).
#[inline]
fn nearest_level(x: f32) -> u8 {
    let mut lo = 0usize;
    for (i, pair) in NF4_LEVELS.windows(2).enumerate() {
        if x > (pair[0] + pair[1]) * 0.5 {
            lo = i + 1;
        }
    }
    lo as u8
}

impl Nf4Tensor {
    /// Quantizes `data` (row-major `(rows, cols)`); `cols` must be a multiple of the even `block_size`.
    pub fn quantize(
        data: &[f32],
        (rows, cols): (usize, usize),
        block_size: usize,
        double: bool,
    ) -> Result<Self> {
        if block_size == 0
            || !block_size.is_multiple_of(2)
            || cols % block_size != 0
            || data.len() != rows * cols
        {
            return Err(Error::Unsupported(format!(
                "NF4 needs an even block size dividing the row length: {rows}x{cols} with blocks of {block_size}"
            )));
        }
        let blocks: Vec<(f32, Vec<u8>)> = data
            .par_chunks(block_size)
            .map(|block| {
                let absmax = block.iter().fold(0f32, |m, &x| m.max(x.abs()));
                let inv = if absmax > 0.0 { 1.0 / absmax } else { 0.0 };
                let codes = block
                    .chunks(2)
                    .map(|p| nearest_level(p[0] * inv) | (nearest_level(p[1] * inv) << 4))
                    .collect();
                (absmax, codes)
            })
            .collect();
        let mut absmax = Vec::with_capacity(blocks.len());
        let mut codes = Vec::with_capacity(data.len() / 2);
        for (m, c) in blocks {
            absmax.push(m);
            codes.extend_from_slice(&c);
        }
        Ok(Self { rows, cols, block_size, codes, scales: BlockScales::new(absmax, double) })
    }

    /// Reassembles a tensor from its stored parts, checking their sizes.
    pub fn from_parts(
        (rows, cols): (usize, usize),
        block_size: usize,
        codes: Vec<u8>,
        scales: BlockScales,
    ) -> Result<Self> {
        let n = rows * cols;
        if block_size == 0
            || cols % block_size != 0
            || codes.len() * 2 != n
            || scales.len() * block_size != n
        {
            return Err(Error::Unsupported(format!(
                "NF4 parts do not fit {rows}x{cols} with blocks of {block_size}: {} code bytes, {} scales",
                codes.len(),
                scales.len()
            )));
        }
        Ok(Self { rows, cols, block_size, codes, scales })
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Weights per block maximum.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The packed 4-bit codes.
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    /// The block maxima.
    pub fn scales(&self) -> &BlockScales {
        &self.scales
    }

    /// Bytes held by codes and scales.
    pub fn size_in_bytes(&self) -> usize {
        self.codes.len() + self.scales.size_in_bytes()
    }

    /// Writes rows `first..first + out.len() / cols` as f32 into `out`.
    pub fn dequantize_rows(&self, first: usize, out: &mut [f32]) {
        let start = first * self.cols;
        for (b, block) in out.chunks_mut(self.block_size).enumerate() {
            let bi = start / self.block_size + b;
            let m = self.scales.get(bi);
            let codes = &self.codes[bi * self.block_size / 2..(bi + 1) * self.block_size / 2];
            for (pair, &c) in block.chunks_mut(2).zip(codes) {
                pair[0] = NF4_LEVELS[(c & 15) as usize] * m;
                pair[1] = NF4_LEVELS[(c >> 4) as usize] * m;
            }
        }
    }

    /// The whole matrix as f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        let rows_per_task = (4096 / self.cols).max(1);
        out.par_chunks_mut(rows_per_task * self.cols)
            .enumerate()
            .for_each(|(i, chunk)| self.dequantize_rows(i * rows_per_task, chunk));
        out
    }
}

/// Reconstruction error of a quantized matrix against its original.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantError {
    /// Root mean squared error.
    pub rmse: f64,
    /// Largest absolute error.
    pub max_abs: f64,
    /// `||W - Q(W)|| / ||W||`.
    pub relative: f64,
}

impl QuantError {
    /// Compares `original` with `restored`.
    pub fn measure(original: &[f32], restored: &[f32]) -> Self {
        let (mut se, mut norm, mut max_abs) = (0f64, 0f64, 0f64);
        for (&a, &b) in original.iter().zip(restored) {
            let d = (a - b) as f64;
            se += d * d;
            norm += (a as f64) * (a as f64);
            max_abs = max_abs.max(d.abs());
        }
        let n = original.len().max(1) as f64;
        Self {
            rmse: (se / n).sqrt(),
            max_abs,
            relative: if norm > 0.0 { (se / norm).sqrt() } else { 0.0 },
        }
    }
}
