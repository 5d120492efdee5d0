//! Token embeddings: a dense f32 table, or the rows of a quantized matrix dequantized as they are
//! looked up.
//!
//! A tied model's embedding is its output head. Where that head is held quantized (a GGUF served
//! or evaluated as stored, the Q8_0 head of a QLoRA base), looking tokens up in the head's own
//! blocks gives the same values as its dequantized copy without keeping that copy: 113 MB for
//! SmolLM2's 49k x 576 table, the largest single tensor of the model.

use std::sync::Arc;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Tensor};

/// The embedding table of a model.
#[derive(Debug, Clone)]
pub enum Embedding {
    /// An f32 table `(vocab, hidden)`.
    Dense(Tensor),
    /// A quantized matrix `(vocab, hidden)` whose rows are whole ggml blocks.
    Blocks(Arc<QTensor>),
}

impl Embedding {
    /// The lookup for a tied model whose head is `head`: the head's blocks when it is held in a
    /// ggml format whose rows are whole blocks, `table` otherwise.
    pub fn tied(
        table: impl FnOnce() -> crate::Result<Tensor>,
        head: &QMatMul,
    ) -> crate::Result<Self> {
        match head {
            QMatMul::QTensor(q) if row_blocks(q) => Ok(Self::Blocks(q.clone())),
            _ => Ok(Self::Dense(table()?)),
        }
    }

    /// The embeddings `(n, hidden)` of the token ids `ids` (a u32 vector of `n`).
    pub fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Dense(t) => t.index_select(ids, 0),
            Self::Blocks(q) => {
                let ids: Vec<u32> = ids.to_vec1()?;
                dequantize_rows(q, ids.iter().map(|&i| i as usize))
            }
        }
    }
}

/// Whether `q` is a CPU matrix of a ggml format whose rows are whole blocks, so that a row's
/// bytes can be cut out of its storage. NF4 storage, which reports the Q8_1 or Q3_K tag
/// (`quant::storage`), is never sliced as ggml bytes.
pub(crate) fn row_blocks(q: &QTensor) -> bool {
    use GgmlDType as T;
    let dims = q.shape().dims();
    let known = matches!(
        q.dtype(),
        T::F32
            | T::F16
            | T::BF16
            | T::Q4_0
            | T::Q4_1
            | T::Q5_0
            | T::Q5_1
            | T::Q8_0
            | T::Q4K
            | T::Q5K
            | T::Q6K
    );
    known
        && q.device().is_cpu()
        && dims.len() == 2
        && dims[1].is_multiple_of(q.dtype().block_size())
}

/// Rows `rows` of a [`row_blocks`] matrix, dequantized to f32 `(rows.len(), cols)`.
pub(crate) fn dequantize_rows(
    q: &QTensor,
    rows: impl ExactSizeIterator<Item = usize>,
) -> candle_core::Result<Tensor> {
    let (dtype, dims) = (q.dtype(), q.shape().dims());
    let (vocab, cols) = (dims[0], dims[1]);
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    let n = rows.len();
    let mut bytes = Vec::with_capacity(n * row_bytes);
    for r in rows {
        if r >= vocab {
            candle_core::bail!("token id {r} is outside the embedding table of {vocab} rows");
        }
        bytes.extend_from_slice(&data[r * row_bytes..(r + 1) * row_bytes]);
    }
    qtensor_from_ggml(dtype, &bytes, vec![n, cols], &Device::Cpu)?.dequantize(&Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_rows_equal_the_rows_of_the_dequantized_table() {
        let dev = Device::Cpu;
        let table = Tensor::randn(0f32, 1.0, (40, 64), &dev).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1, GgmlDType::Q4K] {
            let cols = if dtype == GgmlDType::Q4K { 256 } else { 64 };
            let table = if cols == 64 {
                table.clone()
            } else {
                Tensor::randn(0f32, 1.0, (40, cols), &dev).unwrap()
            };
            let q = Arc::new(QTensor::quantize(&table, dtype).unwrap());
            let ids = Tensor::new(&[3u32, 0, 39, 3, 17], &dev).unwrap();
            let dense = Embedding::Dense(q.dequantize(&dev).unwrap()).forward(&ids).unwrap();
            let blocks = Embedding::tied(
                || unreachable!("the head's blocks serve"),
                &QMatMul::QTensor(q.clone()),
            )
            .unwrap();
            assert!(matches!(blocks, Embedding::Blocks(_)));
            let got = blocks.forward(&ids).unwrap();
            assert_eq!(got.to_vec2::<f32>().unwrap(), dense.to_vec2::<f32>().unwrap(), "{dtype:?}");
        }
    }

    #[test]
    fn an_id_past_the_table_is_an_error_naming_it() {
        let dev = Device::Cpu;
        let q = Arc::new(
            QTensor::quantize(
                &Tensor::zeros((8, 32), candle_core::DType::F32, &dev).unwrap(),
                GgmlDType::Q8_0,
            )
            .unwrap(),
        );
        let err =
            Embedding::Blocks(q).forward(&Tensor::new(&[2u32, 8], &dev).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("token id 8 is outside the embedding table of 8 rows"),
            "{err}"
        );
    }
}
