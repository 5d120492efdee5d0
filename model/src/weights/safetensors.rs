//! Hugging Face safetensors checkpoints: every `*.safetensors` shard of a directory, memory-mapped.

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::WeightSource;
use crate::{Error, Result};

/// The shards of one checkpoint directory.
pub struct SafetensorsSource {
    files: Vec<PathBuf>,
    inner: MmapedSafetensors,
}

impl SafetensorsSource {
    /// Maps every `*.safetensors` file in `dir` (adapter files excluded).
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("adapter")))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::MissingTensor(format!("{}/*.safetensors", dir.display())));
        }
        Self::open_files(files)
    }

    /// Maps the given shards.
    pub fn open_files(files: Vec<PathBuf>) -> Result<Self> {
        // SAFETY: the files are only read, as for any mmap.
        let inner = unsafe { MmapedSafetensors::multi(&files)? };
        Ok(Self { files, inner })
    }

    /// The shard files.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl WeightSource for SafetensorsSource {
    fn contains(&self, name: &str) -> bool {
        self.inner.get(name).is_ok()
    }

    fn tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        if !self.contains(name) {
            return Err(Error::MissingTensor(name.into()));
        }
        Ok(self.inner.load(name, device)?.to_dtype(DType::F32)?)
    }
}
