//! Several projections of the same input run as one matrix (q/k/v, gate/up): one activation
//! quantization and one parallel region instead of three or two, which is most of the cost of a
//! decoding step on a small model. Used only while the parts carry no LoRA. With f32 weights the
//! parts become views of the fused matrix (no extra memory); quantized matrices cannot be viewed,
//! so the fused copy costs their size once more and is made only for small models.

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{Tensor, D};

use super::Linear;
use crate::Result;

/// The row-wise concatenation of projections sharing an input.
#[derive(Debug, Clone)]
pub struct FusedLinear {
    weight: QMatMul,
    bias: Option<Tensor>,
    splits: Vec<usize>,
}

impl FusedLinear {
    /// Fuses `parts` when their weights have one storage type (and all or none have a bias);
    /// f32 parts are re-pointed at views of the fused matrix.
    pub fn new(parts: &mut [&mut Linear], allow_copy: bool) -> Result<Option<Self>> {
        let splits: Vec<usize> = parts.iter().map(|l| l.out_dim()).collect();
        let rows: usize = splits.iter().sum();
        let in_dim = parts[0].in_dim();
        let weight = match parts.iter().map(|l| l.weight()).collect::<Vec<_>>().as_slice() {
            ws if ws.iter().all(|w| matches!(w, QMatMul::Tensor(_))) => {
                let ts: Vec<Tensor> = ws
                    .iter()
                    .map(|w| match w {
                        QMatMul::Tensor(t) => t.clone(),
                        _ => unreachable!(),
                    })
                    .collect();
                QMatMul::Tensor(Tensor::cat(&ts, 0)?)
            }
            ws => {
                let qs: Option<Vec<&QTensor>> = ws
                    .iter()
                    .map(|w| match w {
                        QMatMul::QTensor(q) => Some(q.as_ref()),
                        _ => None,
                    })
                    .collect();
                let Some(qs) = qs else { return Ok(None) };
                if !allow_copy || qs.iter().any(|q| q.dtype() != qs[0].dtype()) {
                    return Ok(None);
                }
                let mut bytes = Vec::new();
                for q in &qs {
                    bytes.extend_from_slice(&q.data()?);
                }
                let dev = qs[0].device();
                let storage =
                    QStorage::from_data(std::borrow::Cow::Owned(bytes), &dev, qs[0].dtype())?;
                QMatMul::QTensor(std::sync::Arc::new(QTensor::new(storage, (rows, in_dim))?))
            }
        };
        let bias = match parts.iter().map(|l| l.bias()).collect::<Option<Vec<_>>>() {
            Some(bs) => Some(Tensor::cat(&bs, 0)?),
            None if parts.iter().all(|l| l.bias().is_none()) => None,
            None => return Ok(None),
        };
        if let QMatMul::Tensor(fused) = &weight {
            let mut start = 0;
            for (part, &n) in parts.iter_mut().zip(&splits) {
                part.set_weight(QMatMul::Tensor(fused.narrow(0, start, n)?));
                start += n;
            }
        }
        Ok(Some(Self { weight, bias, splits }))
    }

    /// The parts' outputs for `x` `(..., in)` side by side `(..., sum of the parts' outputs)`.
    pub fn forward_joined(&self, x: &Tensor) -> Result<Tensor> {
        let y = super::frozen_matmul(&x.contiguous()?, &self.weight)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// The outputs of every part for `x` `(..., in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let y = self.forward_joined(x)?;
        let mut start = 0;
        let mut out = Vec::with_capacity(self.splits.len());
        for &n in &self.splits {
            out.push(y.narrow(D::Minus1, start, n)?);
            start += n;
        }
        Ok(out)
    }
}
