//! NF4 with double quantization: small reconstruction error, exact save/load, a quantized matmul
//! for a few rows that equals the dequantized product, and a model over an NF4 base that
//! computes exactly what f32 weights equal to the dequantized ones compute.

mod train_tiny;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use medalign_model::quant::{nf4_qtensor, Nf4Tensor, QuantFormat, QuantizedModel, NF4_LEVELS};
use medalign_model::weights::{TensorMapSource, WeightSource};
use medalign_model::{LinearFormat, Model, Weights};
use medalign_stages::train::data::SplitMix64;

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64(seed);
    (0..n)
        .map(|_| {
            let (u, v) = (
                (r.below(1 << 30) as f64 + 1.0) / (1u64 << 30) as f64,
                r.below(1 << 30) as f64 / (1u64 << 30) as f64,
            );
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * 0.02) as f32
        })
        .collect()
}

#[test]
fn nf4_levels_are_exact_on_block_maxima_and_zero() {
    let mut data = vec![0f32; 64];
    data[3] = -0.5;
    data[10] = 0.5 * NF4_LEVELS[12];
    let q = Nf4Tensor::quantize(&data, (1, 64), 64, false).unwrap();
    let r = q.dequantize();
    assert_eq!(r[3], -0.5);
    assert_eq!(r[0], 0.0);
    assert!((r[10] - data[10]).abs() < 1e-7);
}

#[test]
fn nf4_reconstruction_error_is_small_and_double_quant_costs_little() {
    let data = gaussian(256 * 128, 1);
    let single = Nf4Tensor::quantize(&data, (256, 128), 64, false).unwrap();
    let double = Nf4Tensor::quantize(&data, (256, 128), 64, true).unwrap();
    let err =
        |q: &Nf4Tensor| medalign_model::quant::QuantError::measure(&data, &q.dequantize()).relative;
    let (e1, e2) = (err(&single), err(&double));
    assert!(e1 < 0.11, "NF4 relative error {e1}");
    assert!(e2 < e1 * 1.05, "double quantization error {e2} vs {e1}");
    assert!(
        double.size_in_bytes() * 8 < data.len() * 9 / 2,
        "{} bytes for {} weights",
        double.size_in_bytes(),
        data.len()
    );
}

#[test]
fn quantized_model_saves_and_loads_exactly() {
    let src = TensorMapSource(train_tiny::weights(3));
    let dir = tempfile::tempdir().unwrap();
    for format in [QuantFormat::Nf4 { block_size: 32, double_quant: true }, QuantFormat::Q8_0] {
        let (q, errors) = QuantizedModel::quantize(&src, &train_tiny::config(), format).unwrap();
        assert_eq!(errors.len(), 14);
        let path = dir.path().join("m.safetensors");
        q.save(&path).unwrap();
        let back = QuantizedModel::load(&path).unwrap();
        for name in medalign_model::quant::tensor_names(&train_tiny::config())
            .iter()
            .filter(|n| src.contains(n))
        {
            let a: Vec<f32> =
                q.tensor(name, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> =
                back.tensor(name, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, b, "{name} ({format:?})");
        }
    }
}

#[test]
fn few_row_nf4_matmul_equals_the_dequantized_product() {
    let w = gaussian(96 * 64, 2);
    let q = Arc::new(Nf4Tensor::quantize(&w, (96, 64), 32, true).unwrap());
    let m = QMatMul::from_qtensor(
        nf4_qtensor(q.clone(), "model.layers.0.mlp.gate_proj.weight").unwrap(),
    )
    .unwrap();
    let x = Tensor::from_vec(gaussian(3 * 64, 3), (3, 64), &Device::Cpu).unwrap();
    let got: Vec<f32> = m.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let wd = Tensor::from_vec(q.dequantize(), (96, 64), &Device::Cpu).unwrap();
    let want: Vec<f32> =
        x.matmul(&wd.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{g} vs {w}");
    }
}

#[test]
fn a_model_over_an_nf4_base_computes_with_the_dequantized_weights() {
    let src = TensorMapSource(train_tiny::weights(5));
    let cfg = train_tiny::config();
    let (q, _) = QuantizedModel::quantize(
        &src,
        &cfg,
        QuantFormat::Nf4 { block_size: 32, double_quant: true },
    )
    .unwrap();
    let names = medalign_model::quant::tensor_names(&cfg);
    let mut restored: std::collections::HashMap<String, Tensor> = names
        .iter()
        .filter(|n| q.contains(n))
        .map(|n| (n.clone(), q.tensor(n, &Device::Cpu).unwrap()))
        .collect();
    // The tied head of a quantized model is Q8_0, and token lookups read its blocks: the
    // reference embeds with that table too.
    let table = restored["model.embed_tokens.weight"].clone();
    let q8 = QTensor::quantize(&table, GgmlDType::Q8_0).unwrap().dequantize(&Device::Cpu).unwrap();
    restored.insert("model.embed_tokens.weight".into(), q8);
    let f = Model::new(
        &cfg,
        Weights::new(Arc::new(TensorMapSource(restored)), Device::Cpu, LinearFormat::F32),
    )
    .unwrap();
    let n =
        Model::new(&cfg, Weights::new(Arc::new(q), Device::Cpu, LinearFormat::Quantized)).unwrap();
    // 6 rows take the NF4 kernel, 40 rows the dequantize-then-GEMM path.
    for len in [6usize, 40] {
        let ids = Tensor::from_vec(
            (0..len as u32).map(|i| (7 * i + 3) % 64).collect::<Vec<_>>(),
            (1, len),
            &Device::Cpu,
        )
        .unwrap();
        // Hidden states: the tied head of a quantized model is Q8_0, whose few-row kernel also
        // quantizes its input, so logits would differ for reasons outside NF4.
        let a: Vec<f32> =
            f.forward_hidden(&ids, None, None).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> =
            n.forward_hidden(&ids, None, None).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "max hidden-state difference {diff} at {len} tokens");
    }
}
