//! NF4 inside candle's quantized-tensor machinery: [`Nf4Storage`] implements candle's
//! `QuantizedType`, so an NF4 matrix is a `QTensor` that every projection of the model accepts.
//! The model's frozen-matmul op then does what QLoRA needs with no change: for many rows it
//! dequantizes the block to f32 for one GEMM, for a few rows it calls [`Nf4Storage`]'s own
//! matmul, and its backward dequantizes to send the gradient to the input.
//!
//! Candle's `GgmlDType` is a closed enum, so the storage must report one of its tags. The tags
//! are chosen so that no candle fast path reinterprets the NF4 bytes: Q8_1 and Q3_K have no
//! repacked kernels and are never re-quantized at load; k_proj and up_proj report Q3_K while their
//! siblings report Q8_1, so the model never byte-fuses q/k/v or gate/up matrices of NF4 storage.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor, QuantizedType};
use candle_core::CpuStorage;
use half::f16;
use rayon::prelude::*;

use super::nf4::Nf4Tensor;
use crate::Result;

/// An NF4 matrix as candle quantized storage.
pub struct Nf4Storage {
    tensor: Arc<Nf4Tensor>,
    tag: GgmlDType,
}

/// The placeholder tag for the projection `module` (see the module docs).
fn tag_for(module: &str) -> GgmlDType {
    if module.contains("k_proj") || module.contains("up_proj") {
        GgmlDType::Q3K
    } else {
        GgmlDType::Q8_1
    }
}

impl Nf4Storage {
    /// Wraps `tensor`, which holds the weight named `module`.
    pub fn new(tensor: Arc<Nf4Tensor>, module: &str) -> Self {
        Self { tensor, tag: tag_for(module) }
    }

    /// The NF4 matrix.
    pub fn tensor(&self) -> &Arc<Nf4Tensor> {
        &self.tensor
    }
}

/// A `QTensor` `(rows, cols)` over NF4 storage, for the projection `module`.
pub fn nf4_qtensor(tensor: Arc<Nf4Tensor>, module: &str) -> Result<QTensor> {
    let dims = tensor.dims();
    Ok(QTensor::new(QStorage::Cpu(Box::new(Nf4Storage::new(tensor, module))), dims)?)
}

impl QuantizedType for Nf4Storage {
    fn dtype(&self) -> GgmlDType {
        self.tag
    }

    /// `dst (m, n) = lhs (m, k) @ W^T` with `W (n, k)`: each task dequantizes a band of rows of
    /// `W` once and dots it with every row of `lhs`.
    fn matmul_t(
        &self,
        (m, k, n): (usize, usize, usize),
        lhs: &[f32],
        dst: &mut [f32],
    ) -> candle_core::Result<()> {
        let (rows, cols) = self.tensor.dims();
        if rows != n || cols != k || lhs.len() < m * k || dst.len() < m * n {
            candle_core::bail!("nf4 matmul: weight {rows}x{cols} does not fit ({m}, {k}, {n})");
        }
        const BAND: usize = 16;
        let bands: Vec<Vec<f32>> = (0..n.div_ceil(BAND))
            .into_par_iter()
            .map(|b| {
                let (first, count) = (b * BAND, BAND.min(n - b * BAND));
                let mut w = vec![0f32; count * k];
                self.tensor.dequantize_rows(first, &mut w);
                let mut out = vec![0f32; m * count];
                for i in 0..m {
                    let x = &lhs[i * k..(i + 1) * k];
                    for (j, row) in w.chunks(k).enumerate() {
                        out[i * count + j] = x.iter().zip(row).map(|(a, b)| a * b).sum();
                    }
                }
                out
            })
            .collect();
        for (b, out) in bands.iter().enumerate() {
            let (first, count) = (b * BAND, BAND.min(n - b * BAND));
            for i in 0..m {
                dst[i * n + first..i * n + first + count]
                    .copy_from_slice(&out[i * count..(i + 1) * count]);
            }
        }
        Ok(())
    }

    fn matmul_t_f16(
        &self,
        mkn: (usize, usize, usize),
        lhs: &[f16],
        dst: &mut [f16],
    ) -> candle_core::Result<()> {
        let lhs: Vec<f32> = lhs.iter().map(|x| x.to_f32()).collect();
        let mut out = vec![0f32; dst.len()];
        self.matmul_t(mkn, &lhs, &mut out)?;
        dst.iter_mut().zip(out).for_each(|(d, x)| *d = f16::from_f32(x));
        Ok(())
    }

    fn embedding(
        &self,
        ids: &[u32],
        rows: usize,
        hidden: usize,
    ) -> candle_core::Result<CpuStorage> {
        if (rows, hidden) != self.tensor.dims() {
            candle_core::bail!("nf4 embedding: shape mismatch");
        }
        let mut out = vec![0f32; ids.len() * hidden];
        for (i, &id) in ids.iter().enumerate() {
            if id as usize >= rows {
                candle_core::bail!("embedding id {id} is out of range for {rows} rows");
            }
            self.tensor.dequantize_rows(id as usize, &mut out[i * hidden..(i + 1) * hidden]);
        }
        Ok(CpuStorage::F32(out))
    }

    fn dequantize(&self, elem_count: usize) -> candle_core::Result<CpuStorage> {
        let v = self.tensor.dequantize();
        if v.len() != elem_count {
            candle_core::bail!("nf4 dequantize: {} elements, asked for {elem_count}", v.len());
        }
        Ok(CpuStorage::F32(v))
    }

    /// The packed codes only: `as_ptr` must point at this many readable bytes.
    fn storage_size_in_bytes(&self) -> usize {
        self.tensor.codes().len()
    }

    fn as_ptr(&self) -> *const u8 {
        self.tensor.codes().as_ptr()
    }

    fn block_size(&self) -> usize {
        self.tensor.block_size()
    }

    fn from_float(&mut self, xs: &[f32]) {
        let t = &self.tensor;
        let double = matches!(t.scales(), super::nf4::BlockScales::Double { .. });
        if let Ok(q) = Nf4Tensor::quantize(xs, t.dims(), t.block_size(), double) {
            self.tensor = Arc::new(q);
        }
    }

    fn from_float_imatrix(&mut self, xs: &[f32], _imatrix_weights: &[f32], _n_per_row: usize) {
        self.from_float(xs)
    }

    fn size(&self) -> usize {
        self.tensor.size_in_bytes()
    }
}
