//! Hugging Face folder loader: `config.json`, `tokenizer.json`, one or many safetensors files.

use super::config::LlamaConfig;
use super::weights::{check_shape, hf_name, WeightSource};
use crate::error::{Error, Result};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// Memory-mapped safetensors of a Hugging Face model folder.
pub struct SafetensorsSource {
    dir: PathBuf,
    st: MmapedSafetensors,
    names: std::collections::HashSet<String>,
}

impl SafetensorsSource {
    /// Opens the weights of `dir` (`model.safetensors` or the files of `model.safetensors.index.json`).
    pub fn open(dir: &Path) -> Result<Self> {
        let files = safetensors_files(dir)?;
        for f in &files {
            if !f.is_file() {
                return Err(Error::input(format!("{}: missing safetensors file", f.display())));
            }
        }
        // SAFETY: the files are opened read-only; as with any mmap, a concurrent writer could change
        // them under us, which we accept for model files as every loader in the ecosystem does.
        let st = unsafe { MmapedSafetensors::multi(&files) }
            .map_err(|e| Error::input(format!("{}: corrupt safetensors: {e}", dir.display())))?;
        let names = st.tensors().into_iter().map(|(n, _)| n).collect();
        Ok(Self { dir: dir.to_path_buf(), st, names })
    }

    /// The architecture config from `config.json`.
    pub fn config(dir: &Path) -> Result<LlamaConfig> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        LlamaConfig::from_hf_json(&text, &path.display().to_string())
    }
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::input(format!("{}: invalid JSON: {e}", index.display())))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::input(format!("{}: no `weight_map` object", index.display())))?;
        let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(String::from)).collect();
        files.sort();
        files.dedup();
        if files.iter().any(|f| f.contains("..") || f.starts_with('/')) {
            return Err(Error::input(format!("{}: file names must stay inside the folder", index.display())));
        }
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::input(format!("{}: no model.safetensors or model.safetensors.index.json", dir.display())))
}

impl WeightSource for SafetensorsSource {
    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let origin = self.dir.display().to_string();
        let hf = hf_name(name).ok_or_else(|| Error::input(format!("{origin}: no tensor for `{name}`")))?;
        if !self.names.contains(&hf) {
            return Err(Error::input(format!("{origin}: missing tensor `{hf}`")));
        }
        let t = self
            .st
            .load(&hf, &Device::Cpu)
            .map_err(|e| Error::input(format!("{origin}: cannot read tensor `{hf}`: {e}")))?;
        check_shape(&t, &hf, shape, &origin)?;
        Ok(t.to_dtype(dtype)?)
    }

    fn has(&self, name: &str) -> bool {
        hf_name(name).is_some_and(|n| self.names.contains(&n))
    }
}
