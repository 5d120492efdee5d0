//! The [`Weights`] handle: a prefix path into a [`WeightSource`], in the manner of candle's
//! `VarBuilder`, that can also hand out quantized matrices for inference.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Shape, Tensor};

use crate::{Error, Result};

/// A store of named tensors, addressed by Hugging Face names (`model.layers.0.self_attn.q_proj.weight`).
pub trait WeightSource: Send + Sync {
    /// Whether the tensor exists.
    fn contains(&self, name: &str) -> bool;
    /// The tensor as f32, in Hugging Face layout.
    fn tensor(&self, name: &str, device: &Device) -> Result<Tensor>;
    /// The tensor in its stored quantized form, if it has one.
    fn qtensor(&self, _name: &str, _device: &Device) -> Result<Option<QTensor>> {
        Ok(None)
    }
}

/// How the projection matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinearFormat {
    /// Dequantized f32: exact, differentiable, what training and reference checks use.
    #[default]
    F32,
    /// Quantized for fast CPU inference: GGUF types with SIMD kernels are kept, the others
    /// (Q5_0, Q5_1) and float checkpoints become Q8_0.
    Quantized,
}

/// Tensors held in memory, for random test models and merged adapters.
pub struct TensorMapSource(pub HashMap<String, Tensor>);

impl WeightSource for TensorMapSource {
    fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
    fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let t = self.0.get(name).ok_or_else(|| Error::MissingTensor(name.into()))?;
        Ok(t.to_device(device)?.to_dtype(DType::F32)?)
    }
}

/// A path into a weight source; `pp` descends, `get` loads.
#[derive(Clone)]
pub struct Weights {
    source: Arc<dyn WeightSource>,
    path: Vec<String>,
    device: Device,
    format: LinearFormat,
}

impl Weights {
    /// A handle at the root of `source`.
    pub fn new(source: Arc<dyn WeightSource>, device: Device, format: LinearFormat) -> Self {
        Self { source, path: vec![], device, format }
    }

    /// Descends one level of the name tree.
    pub fn pp(&self, part: impl ToString) -> Self {
        let mut w = self.clone();
        w.path.push(part.to_string());
        w
    }

    /// The device tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How projection matrices are held.
    pub fn format(&self) -> LinearFormat {
        self.format
    }

    /// The full name of `leaf` under this handle.
    pub fn name(&self, leaf: &str) -> String {
        let mut parts = self.path.clone();
        parts.push(leaf.to_string());
        parts.join(".")
    }

    /// Whether `leaf` exists under this handle.
    pub fn contains(&self, leaf: &str) -> bool {
        self.source.contains(&self.name(leaf))
    }

    /// Loads `leaf` as f32 and checks its shape.
    pub fn get(&self, shape: impl Into<Shape>, leaf: &str) -> Result<Tensor> {
        let name = self.name(leaf);
        if !self.source.contains(&name) {
            return Err(Error::MissingTensor(name));
        }
        let t = self.source.tensor(&name, &self.device)?;
        let shape = shape.into();
        if t.shape() != &shape {
            return Err(Error::Unsupported(format!(
                "tensor `{name}` has shape {:?}, the config implies {:?}",
                t.dims(),
                shape.dims()
            )));
        }
        Ok(t)
    }

    /// Loads the matrix `leaf` (shape `(out, in)`) as a matmul operand in this handle's format.
    pub fn get_matmul(&self, (out_dim, in_dim): (usize, usize), leaf: &str) -> Result<QMatMul> {
        if self.format == LinearFormat::F32 {
            return Ok(QMatMul::Tensor(self.get((out_dim, in_dim), leaf)?));
        }
        let name = self.name(leaf);
        let qt = match self.source.qtensor(&name, &self.device)? {
            Some(qt) => requantize_if_slow(qt, &self.device)?,
            None => {
                let t = self.get((out_dim, in_dim), leaf)?;
                if in_dim % GgmlDType::Q8_0.block_size() != 0 {
                    return Ok(QMatMul::Tensor(t));
                }
                QTensor::quantize(&t, GgmlDType::Q8_0)?
            }
        };
        if qt.shape().dims() != [out_dim, in_dim] {
            return Err(Error::Unsupported(format!(
                "tensor `{name}` has shape {:?}, the config implies {:?}",
                qt.shape().dims(),
                [out_dim, in_dim]
            )));
        }
        Ok(QMatMul::from_qtensor(qt)?)
    }
}

/// Candle has only scalar kernels for these types; Q8_0 runs 2-3x faster on AVX2. (Q4_1 has a
/// kernel of ours, see `layers::qmatvec`.)
fn requantize_if_slow(qt: QTensor, device: &Device) -> Result<QTensor> {
    match qt.dtype() {
        GgmlDType::Q5_0 | GgmlDType::Q5_1 => {
            Ok(QTensor::quantize(&qt.dequantize(device)?, GgmlDType::Q8_0)?)
        }
        _ => Ok(qt),
    }
}
