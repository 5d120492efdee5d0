//! [`QuantizedModel`]: a checkpoint whose projection matrices are quantized (NF4 or a ggml type)
//! and whose other tensors stay f32, usable as a [`WeightSource`] so `Model::new` builds a frozen
//! 4-bit base from it, and stored as one safetensors file whose header metadata says how each
//! quantized tensor is laid out.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::nf4::{BlockScales, Nf4Tensor, QuantError};
use super::storage::nf4_qtensor;
use crate::config::{Architecture, Config};
use crate::weights::WeightSource;
use crate::{Error, Result};

/// How projection matrices are quantized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum QuantFormat {
    /// NF4 with `block_size` weights per maximum, maxima in 8 bits when `double_quant`.
    Nf4 {
        /// Weights per block.
        block_size: usize,
        /// Quantize the block maxima too.
        double_quant: bool,
    },
    /// ggml Q8_0 (candle has SIMD kernels).
    Q8_0,
    /// ggml Q4_0 (candle has SIMD kernels).
    Q4_0,
}

/// One quantized matrix.
#[derive(Debug, Clone)]
pub enum QuantizedWeight {
    /// NF4.
    Nf4(Arc<Nf4Tensor>),
    /// A ggml type candle computes with.
    Ggml(Arc<QTensor>),
}

/// The header record of one quantized tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    format: String,
    shape: Vec<usize>,
    #[serde(default)]
    block_size: usize,
}

const METADATA_KEY: &str = "medalign.quantization";

/// The Hugging Face names of every tensor a Llama-family model of `cfg` may have.
pub fn tensor_names(cfg: &Config) -> Vec<String> {
    let mut names = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".into(),
        "lm_head.weight".into(),
        "rope_freqs.weight".into(),
    ];
    for l in 0..cfg.num_hidden_layers {
        for p in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            names.push(format!("model.layers.{l}.self_attn.{p}.weight"));
            if cfg.architecture == Architecture::Qwen2 && p != "o_proj" {
                names.push(format!("model.layers.{l}.self_attn.{p}.bias"));
            }
        }
        for p in ["gate_proj", "up_proj", "down_proj"] {
            names.push(format!("model.layers.{l}.mlp.{p}.weight"));
        }
        names.push(format!("model.layers.{l}.input_layernorm.weight"));
        names.push(format!("model.layers.{l}.post_attention_layernorm.weight"));
    }
    names
}

/// Whether `name` is the weight of one of the seven adaptable projections (what QLoRA quantizes).
pub fn is_projection(name: &str) -> bool {
    name.starts_with("model.layers.") && name.ends_with("_proj.weight")
}

/// A model with quantized projections and f32 everything else.
pub struct QuantizedModel {
    plain: HashMap<String, Tensor>,
    quantized: BTreeMap<String, QuantizedWeight>,
}

impl QuantizedModel {
    /// Reads every tensor of `cfg` from `src`, quantizing the projections; returns the model and
    /// the reconstruction error of each quantized matrix, by name.
    pub fn quantize(
        src: &dyn WeightSource,
        cfg: &Config,
        format: QuantFormat,
    ) -> Result<(Self, Vec<(String, QuantError)>)> {
        let dev = Device::Cpu;
        let (mut plain, mut quantized, mut errors) = (HashMap::new(), BTreeMap::new(), Vec::new());
        for name in tensor_names(cfg).into_iter().filter(|n| src.contains(n)) {
            let t = src.tensor(&name, &dev)?;
            if !is_projection(&name) {
                plain.insert(name, t);
                continue;
            }
            let (rows, cols) = t.dims2()?;
            let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
            let (q, restored) = match format {
                QuantFormat::Nf4 { block_size, double_quant } => {
                    let q = Nf4Tensor::quantize(&data, (rows, cols), block_size, double_quant)?;
                    let r = q.dequantize();
                    (QuantizedWeight::Nf4(Arc::new(q)), r)
                }
                QuantFormat::Q8_0 | QuantFormat::Q4_0 => {
                    let dtype =
                        if format == QuantFormat::Q8_0 { GgmlDType::Q8_0 } else { GgmlDType::Q4_0 };
                    let q = QTensor::quantize(&t, dtype)?;
                    let r = q.dequantize(&dev)?.flatten_all()?.to_vec1()?;
                    (QuantizedWeight::Ggml(Arc::new(q)), r)
                }
            };
            errors.push((name.clone(), QuantError::measure(&data, &restored)));
            quantized.insert(name, q);
        }
        Ok((Self { plain, quantized }, errors))
    }

    /// The quantized matrices, by name.
    pub fn quantized(&self) -> &BTreeMap<String, QuantizedWeight> {
        &self.quantized
    }

    /// Bytes held by the quantized matrices.
    pub fn quantized_bytes(&self) -> usize {
        self.quantized
            .values()
            .map(|q| match q {
                QuantizedWeight::Nf4(t) => t.size_in_bytes(),
                QuantizedWeight::Ggml(t) => t.storage_size_in_bytes(),
            })
            .sum()
    }

    /// Writes one safetensors file (temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut bufs: BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
        let mut entries = BTreeMap::new();
        for (name, t) in &self.plain {
            let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
            bufs.insert(name.clone(), (safetensors::Dtype::F32, t.dims().to_vec(), f32_bytes(&v)));
        }
        for (name, q) in &self.quantized {
            match q {
                QuantizedWeight::Nf4(t) => {
                    let (r, c) = t.dims();
                    entries.insert(
                        name.clone(),
                        Entry {
                            format: "nf4".into(),
                            shape: vec![r, c],
                            block_size: t.block_size(),
                        },
                    );
                    bufs.insert(
                        format!("{name}.nf4_codes"),
                        (safetensors::Dtype::U8, vec![t.codes().len()], t.codes().to_vec()),
                    );
                    match t.scales() {
                        BlockScales::F32(v) => {
                            bufs.insert(
                                format!("{name}.nf4_absmax"),
                                (safetensors::Dtype::F32, vec![v.len()], f32_bytes(v)),
                            );
                        }
                        BlockScales::Double { codes, scales, offset } => {
                            let c: Vec<u8> = codes.iter().map(|&x| x as u8).collect();
                            bufs.insert(
                                format!("{name}.nf4_absmax_codes"),
                                (safetensors::Dtype::I8, vec![c.len()], c),
                            );
                            bufs.insert(
                                format!("{name}.nf4_absmax_scales"),
                                (safetensors::Dtype::F32, vec![scales.len()], f32_bytes(scales)),
                            );
                            bufs.insert(
                                format!("{name}.nf4_absmax_offset"),
                                (safetensors::Dtype::F32, vec![1], f32_bytes(&[*offset])),
                            );
                        }
                    }
                }
                QuantizedWeight::Ggml(t) => {
                    let format = format!("{:?}", t.dtype()).to_lowercase();
                    entries.insert(
                        name.clone(),
                        Entry {
                            format,
                            shape: t.shape().dims().to_vec(),
                            block_size: t.dtype().block_size(),
                        },
                    );
                    let bytes = t.data()?.to_vec();
                    bufs.insert(
                        format!("{name}.ggml"),
                        (safetensors::Dtype::U8, vec![bytes.len()], bytes),
                    );
                }
            }
        }
        let views = bufs
            .iter()
            .map(|(k, (d, s, b))| {
                Ok((
                    k.clone(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).map_err(st_err)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([(
            METADATA_KEY.to_string(),
            serde_json::to_string(&entries).expect("json"),
        )]);
        let tmp = path.with_extension("tmp");
        safetensors::serialize_to_file(views, Some(meta), &tmp).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            match e {
                safetensors::SafeTensorError::IoError(source) => Error::io(&tmp, source),
                e => st_err(e),
            }
        })?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads a file written by [`QuantizedModel::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(st_err)?;
        let entries: BTreeMap<String, Entry> =
            match meta.metadata().as_ref().and_then(|m| m.get(METADATA_KEY)) {
                Some(text) => serde_json::from_str(text).map_err(|e| Error::json(path, e))?,
                None => BTreeMap::new(),
            };
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(st_err)?;
        let get = |name: &str| st.tensor(name).map(|v| v.data().to_vec()).map_err(st_err);
        let (mut plain, mut quantized) = (HashMap::new(), BTreeMap::new());
        for (name, e) in &entries {
            let (rows, cols) = match e.shape.as_slice() {
                [r, c] => (*r, *c),
                _ => {
                    return Err(Error::Unsupported(format!(
                        "{}: `{name}` is not a matrix",
                        path.display()
                    )))
                }
            };
            let q = if e.format == "nf4" {
                let codes = get(&format!("{name}.nf4_codes"))?;
                let scales = match st.tensor(&format!("{name}.nf4_absmax")) {
                    Ok(v) => BlockScales::F32(f32s(v.data())),
                    Err(_) => BlockScales::Double {
                        codes: get(&format!("{name}.nf4_absmax_codes"))?
                            .into_iter()
                            .map(|x| x as i8)
                            .collect(),
                        scales: f32s(&get(&format!("{name}.nf4_absmax_scales"))?),
                        offset: f32s(&get(&format!("{name}.nf4_absmax_offset"))?)[0],
                    },
                };
                QuantizedWeight::Nf4(Arc::new(Nf4Tensor::from_parts(
                    (rows, cols),
                    e.block_size,
                    codes,
                    scales,
                )?))
            } else {
                let dtype = match e.format.as_str() {
                    "q8_0" => GgmlDType::Q8_0,
                    "q4_0" => GgmlDType::Q4_0,
                    other => {
                        return Err(Error::Unsupported(format!(
                            "{}: quantization `{other}`",
                            path.display()
                        )))
                    }
                };
                let data = get(&format!("{name}.ggml"))?;
                let storage =
                    QStorage::from_data(std::borrow::Cow::Owned(data), &Device::Cpu, dtype)?;
                QuantizedWeight::Ggml(Arc::new(QTensor::new(storage, (rows, cols))?))
            };
            quantized.insert(name.clone(), q);
        }
        for (name, view) in st.tensors() {
            if view.dtype() == safetensors::Dtype::F32 && !name.contains(".nf4_") {
                plain
                    .insert(name, Tensor::from_vec(f32s(view.data()), view.shape(), &Device::Cpu)?);
            }
        }
        Ok(Self { plain, quantized })
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn st_err(e: safetensors::SafeTensorError) -> Error {
    Error::Unsupported(format!("safetensors: {e}"))
}

impl WeightSource for QuantizedModel {
    fn contains(&self, name: &str) -> bool {
        self.plain.contains_key(name) || self.quantized.contains_key(name)
    }

    fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        if let Some(t) = self.plain.get(name) {
            return Ok(t.to_device(device)?);
        }
        match self.quantized.get(name) {
            Some(QuantizedWeight::Nf4(t)) => {
                Ok(Tensor::from_vec(t.dequantize(), t.dims(), device)?)
            }
            Some(QuantizedWeight::Ggml(t)) => Ok(t.dequantize(device)?),
            None => Err(Error::MissingTensor(name.into())),
        }
    }

    fn qtensor(&self, name: &str, _device: &Device) -> Result<Option<QTensor>> {
        Ok(match self.quantized.get(name) {
            Some(QuantizedWeight::Nf4(t)) => Some(nf4_qtensor(t.clone(), name)?),
            Some(QuantizedWeight::Ggml(t)) => {
                let storage = QStorage::from_data(t.data()?, &Device::Cpu, t.dtype())?;
                Some(QTensor::new(storage, t.shape().clone())?)
            }
            None => None,
        })
    }
}
