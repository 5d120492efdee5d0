//! A Hugging Face directory (config.json + sharded safetensors) loads equal to the in-memory model.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Device;
use common::{ids, max_abs_diff, random_weights, tiny_config};
use medalign_model::config::{Architecture, Config};
use medalign_model::weights::{SafetensorsSource, TensorMapSource};
use medalign_model::{LinearFormat, Model, Weights};

#[test]
fn sharded_directory_loads_equal_to_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(Architecture::Qwen2);
    std::fs::write(dir.path().join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let weights = random_weights(&cfg, 11);
    let (a, b): (HashMap<_, _>, HashMap<_, _>) =
        weights.clone().into_iter().partition(|(k, _)| k.contains("layers.0"));
    // bf16 in one shard, as many checkpoints ship: loaded as f32.
    let a: HashMap<_, _> =
        a.into_iter().map(|(k, v)| (k, v.to_dtype(candle_core::DType::BF16).unwrap())).collect();
    candle_core::safetensors::save(&a, dir.path().join("model-00001-of-00002.safetensors"))
        .unwrap();
    candle_core::safetensors::save(&b, dir.path().join("model-00002-of-00002.safetensors"))
        .unwrap();

    let loaded_cfg = Config::from_json_file(&dir.path().join("config.json")).unwrap();
    assert_eq!(loaded_cfg, cfg);
    let src = SafetensorsSource::open_dir(dir.path()).unwrap();
    assert_eq!(src.files().len(), 2);
    let from_dir =
        Model::new(&cfg, Weights::new(Arc::new(src), Device::Cpu, LinearFormat::F32)).unwrap();
    let rounded: HashMap<_, _> = weights
        .into_iter()
        .map(|(k, v)| {
            let v = if k.contains("layers.0") {
                v.to_dtype(candle_core::DType::BF16)
                    .unwrap()
                    .to_dtype(candle_core::DType::F32)
                    .unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let original = Model::new(
        &cfg,
        Weights::new(Arc::new(TensorMapSource(rounded)), Device::Cpu, LinearFormat::F32),
    )
    .unwrap();
    let x = ids(&[1, 2, 3, 4, 5]);
    let d = max_abs_diff(
        &original.forward(&x, None, None).unwrap(),
        &from_dir.forward(&x, None, None).unwrap(),
    );
    assert!(d < 1e-5, "safetensors model differs by {d}");
}
