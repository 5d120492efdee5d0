//! LoRA on tiny random models: starts at the base, enable/disable, merge == unmerged, rsLoRA
//! scaling, PEFT save/load round trip.

mod common;

use common::{ids, max_abs_diff, tiny_model};
use medalign_model::config::Architecture;
use medalign_model::lora::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE};
use medalign_model::{LinearFormat, LoraAdapter, LoraConfig, Model, TargetModule};

const PROMPT: [u32; 8] = [3, 14, 15, 9, 26, 5, 35, 8];

fn logits(m: &Model) -> candle_core::Tensor {
    m.forward(&ids(&PROMPT), None, None).unwrap()
}

/// Moves every B off zero so the adapter changes the output.
fn perturb(adapter: &LoraAdapter) {
    for (i, v) in adapter.vars().into_iter().enumerate() {
        let t = v.as_tensor();
        let noise = (t.ones_like().unwrap() * (0.005 * ((i % 5) as f64 + 1.0))).unwrap();
        v.set(&(t + noise).unwrap()).unwrap();
    }
}

#[test]
fn fresh_adapter_leaves_the_model_unchanged() {
    let mut m = tiny_model(Architecture::Llama, LinearFormat::F32);
    let base = logits(&m);
    LoraAdapter::init(&mut m, LoraConfig::default(), 0).unwrap();
    // B = 0, so only the differentiable kernels' rounding differs.
    assert!(max_abs_diff(&base, &logits(&m)) < 1e-4);
}

#[test]
fn disable_restores_base_and_merge_equals_unmerged() {
    for format in [LinearFormat::F32, LinearFormat::Quantized] {
        let mut m = tiny_model(Architecture::Qwen2, format);
        let base = logits(&m);
        let adapter = LoraAdapter::init(
            &mut m,
            LoraConfig { r: 4, lora_alpha: 8.0, ..Default::default() },
            0,
        )
        .unwrap();
        perturb(&adapter);
        let adapted = logits(&m);
        assert!(max_abs_diff(&base, &adapted) > 1e-3, "the adapter should change the output");
        m.set_lora_enabled(false);
        assert!(max_abs_diff(&base, &logits(&m)) < 1e-4);
        m.set_lora_enabled(true);
        m.merge_lora().unwrap();
        let merged = logits(&m);
        // Merging into a Q8_0 weight re-quantizes it: allow 5% of the logit range there.
        let range = adapted
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let tol = if format == LinearFormat::F32 { 1e-4 } else { 0.05 * range };
        let d = max_abs_diff(&adapted, &merged);
        assert!(d < tol, "{format:?}: merged differs by {d}");
        m.unmerge_lora().unwrap();
        assert!(max_abs_diff(&adapted, &logits(&m)) < 1e-5);
    }
}

#[test]
fn rslora_scales_by_alpha_over_sqrt_r() {
    let cfg = LoraConfig { r: 16, lora_alpha: 8.0, use_rslora: true, ..Default::default() };
    assert!((cfg.scaling() - 2.0).abs() < 1e-12);
    assert!((LoraConfig { use_rslora: false, ..cfg }.scaling() - 0.5).abs() < 1e-12);
}

#[test]
fn only_targeted_projections_get_adapters() {
    let mut m = tiny_model(Architecture::Llama, LinearFormat::F32);
    let cfg = LoraConfig {
        target_modules: vec![TargetModule::QProj, TargetModule::VProj],
        ..Default::default()
    };
    let adapter = LoraAdapter::init(&mut m, cfg, 0).unwrap();
    let names: Vec<String> = adapter.named_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.len(), 2 * 2 * 2);
    assert_eq!(names[0], "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    assert!(names.iter().all(|n| n.contains("q_proj") || n.contains("v_proj")));
}

#[test]
fn peft_save_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny_model(Architecture::Mistral, LinearFormat::F32);
    let cfg = LoraConfig { r: 2, lora_alpha: 4.0, use_rslora: true, ..Default::default() };
    let adapter = LoraAdapter::init(&mut m, cfg.clone(), 5).unwrap();
    perturb(&adapter);
    let adapted = logits(&m);
    adapter.save(dir.path(), "tiny").unwrap();
    assert!(dir.path().join(ADAPTER_CONFIG_FILE).is_file());
    assert!(dir.path().join(ADAPTER_WEIGHTS_FILE).is_file());
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(ADAPTER_CONFIG_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(json["peft_type"], "LORA");
    assert_eq!(json["r"], 2);

    let mut fresh = tiny_model(Architecture::Mistral, LinearFormat::F32);
    let loaded = LoraAdapter::load(dir.path(), &mut fresh).unwrap();
    assert_eq!(loaded.config(), &cfg);
    assert_eq!(loaded.vars().len(), adapter.vars().len());
    assert!(max_abs_diff(&adapted, &logits(&fresh)) < 1e-6);
}

#[test]
fn adapter_for_another_shape_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = tiny_model(Architecture::Llama, LinearFormat::F32);
    LoraAdapter::init(&mut m, LoraConfig::default(), 0).unwrap().save(dir.path(), "tiny").unwrap();
    // Same names, but a model whose q_proj has a different shape: Qwen2 has the same dims, so
    // corrupt the file instead by removing one half of a pair.
    let path = dir.path().join(ADAPTER_WEIGHTS_FILE);
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    tensors.remove("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let mut fresh = tiny_model(Architecture::Llama, LinearFormat::F32);
    let err = LoraAdapter::load(dir.path(), &mut fresh).err().unwrap().to_string();
    assert!(err.contains("only one of lora_A/lora_B"), "{err}");
}
