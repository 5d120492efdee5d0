//! Dumps what `scripts/check_vs_torch.py` compares with `transformers` and PEFT: logits of given
//! token ids (optionally under a LoRA adapter, loaded or freshly made and saved), and token ids
//! of given sentences.
//!
//! ```text
//! check_peer logits GGUF IDS.json OUT.safetensors [--adapter DIR] [--save-random-adapter DIR]
//! check_peer tokenize GGUF SENTENCES.json OUT.json
//! ```

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use medalign_model::{LanguageModel, LoadOptions, LoraAdapter, LoraConfig, Result};
use rand::{Rng, SeedableRng};

fn logits(args: &[String]) -> Result<()> {
    let mut lm = LanguageModel::load(&args[0], &LoadOptions::default())?;
    let rows: Vec<Vec<u32>> =
        serde_json::from_str(&std::fs::read_to_string(&args[1]).unwrap()).unwrap();
    match (args.get(3).map(String::as_str), args.get(4)) {
        (Some("--adapter"), Some(dir)) => {
            lm.load_adapter(Path::new(dir))?;
        }
        (Some("--save-random-adapter"), Some(dir)) => {
            let cfg = LoraConfig { r: 8, lora_alpha: 16.0, ..LoraConfig::default() };
            let adapter = LoraAdapter::init(&mut lm.model, cfg, 42)?;
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            for (name, v) in adapter.named_vars() {
                if name.contains("lora_B") {
                    let n = v.as_tensor().elem_count();
                    let data: Vec<f32> = (0..n).map(|_| rng.random_range(-0.02f32..0.02)).collect();
                    v.set(&Tensor::from_vec(data, v.as_tensor().shape(), &Device::Cpu)?)?;
                }
            }
            adapter.save(Path::new(dir), "SmolLM2-135M-Instruct")?;
        }
        _ => {}
    }
    let mut out = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        let ids = Tensor::new(row.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
        out.insert(format!("row{i}"), lm.model.forward(&ids, None, None)?.squeeze(0)?);
    }
    candle_core::safetensors::save(&out, &args[2])?;
    Ok(())
}

fn tokenize(args: &[String]) -> Result<()> {
    let lm = LanguageModel::load(&args[0], &LoadOptions::inference())?;
    let texts: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&args[1]).unwrap()).unwrap();
    let ids = texts.iter().map(|t| lm.tokenizer.encode(t, false)).collect::<Result<Vec<_>>>()?;
    std::fs::write(&args[2], serde_json::to_string(&ids).unwrap()).unwrap();
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("logits") if args.len() >= 4 => logits(&args[1..]),
        Some("tokenize") if args.len() == 4 => tokenize(&args[1..]),
        _ => {
            eprintln!("usage: check_peer logits GGUF IDS.json OUT.safetensors [--adapter DIR | --save-random-adapter DIR]\n       check_peer tokenize GGUF SENTENCES.json OUT.json");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
