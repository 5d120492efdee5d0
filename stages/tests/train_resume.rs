//! A run stopped after a step that was not checkpointed and started again ends with the same
//! adapter bytes as an uninterrupted run; tiny-model SFT lowers the held-out loss; the stage's
//! metrics become a Parquet table and a TensorBoard event file.

mod train_tiny;

use std::path::Path;

use medalign_model::{LoraAdapter, LoraConfig};
use medalign_stages::kinds::adapter::MetricRow;
use medalign_stages::train::metrics::write_events;
use medalign_stages::train::{Objective, Trainer};

fn train(work: &Path, out: &Path, stop_after: Option<usize>) -> Vec<MetricRow> {
    let mut model = train_tiny::model(21);
    let adapter = LoraAdapter::init(
        &mut model,
        LoraConfig { r: 4, lora_alpha: 8.0, ..LoraConfig::default() },
        8,
    )
    .unwrap();
    let objective = Objective::Sft {
        train: train_tiny::pattern_sequences(5, 14, 3),
        eval: train_tiny::pattern_sequences(2, 14, 4),
    };
    let params = train_tiny::params();
    let trainer = Trainer {
        model: &model,
        adapter: &adapter,
        params: &params,
        total_steps: 7,
        pad_id: 0,
        objective,
        work_dir: work.to_path_buf(),
    };
    let metrics = trainer.run(&mut |r| stop_after != Some(r.step)).unwrap();
    adapter.save(out, "tiny").unwrap();
    metrics
}

#[test]
fn kill_and_resume_gives_the_same_adapter_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train(&d.join("work-a"), &d.join("a"), None);
    // Stops after step 3; the last checkpoint is step 2, so step 3 is redone on resume.
    train(&d.join("work-b"), &d.join("b-partial"), Some(3));
    let metrics = train(&d.join("work-b"), &d.join("b"), None);
    let a = std::fs::read(d.join("a/adapter_model.safetensors")).unwrap();
    let b = std::fs::read(d.join("b/adapter_model.safetensors")).unwrap();
    let partial = std::fs::read(d.join("b-partial/adapter_model.safetensors")).unwrap();
    assert_ne!(a, partial, "the stopped run had not finished");
    assert_eq!(a, b, "resumed run differs from the uninterrupted one");
    let steps: Vec<u64> =
        metrics.iter().filter(|m| m.tag == "train/loss").map(|m| m.step).collect();
    assert_eq!(steps, (1..=7).collect::<Vec<_>>(), "one loss per step, none repeated");
}

#[test]
fn sft_lowers_held_out_loss_on_a_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = train(&dir.path().join("work"), &dir.path().join("out"), None);
    let eval: Vec<f64> = metrics.iter().filter(|m| m.tag == "eval/loss").map(|m| m.value).collect();
    assert!(eval.len() >= 2);
    assert!(eval[eval.len() - 1] < eval[0] * 0.9, "eval loss {eval:?}");
}

#[test]
fn metrics_become_a_tensorboard_event_file() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![MetricRow { step: 1, tag: "train/loss".into(), value: 2.5, wall_time: 1.0e9 }];
    let path = write_events(dir.path(), &rows).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(path.file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
    let first_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let second = &bytes[8 + 4 + first_len + 4..];
    let len = u64::from_le_bytes(second[..8].try_into().unwrap()) as usize;
    let event = &second[12..12 + len];
    assert!(event.windows(10).any(|w| w == b"train/loss"));
    assert!(event.windows(4).any(|w| w == 2.5f32.to_le_bytes()));
}
