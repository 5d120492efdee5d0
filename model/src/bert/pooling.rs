//! Sentence-BERT's pooling: the mean of the token states weighted by the attention mask, then L2
//! normalization (sentence-transformers' `Pooling(mean)` and `Normalize` modules).

use candle_core::{DType, Tensor, D};

use crate::Result;

/// Mean of `hidden` (batch, seq, dim) over the tokens where `mask` (batch, seq) is 1. The divisor is
/// clamped at 1e-9, as sentence-transformers clamps it, so an all-padding row gives zeros.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let mask = mask.to_dtype(hidden.dtype())?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    Ok(summed.broadcast_div(&counts)?)
}

/// Each row of `x` (batch, dim) divided by its Euclidean norm (clamped at 1e-12, as
/// `torch.nn.functional.normalize` does).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .to_dtype(DType::F32)?
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    Ok(x.broadcast_div(&norm.to_dtype(x.dtype())?)?)
}
