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
        let text = crate::error::read_text_capped(&path, crate::error::JSON_FILE_CAP)?;
        LlamaConfig::from_hf_json(&text, &path.display().to_string())
    }
}

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = crate::error::read_text_capped(&index, crate::error::JSON_FILE_CAP)?;
        let files = shard_names(&text).map_err(|m| Error::input(format!("{}: {m}", index.display())))?;
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(Error::input(format!("{}: no model.safetensors or model.safetensors.index.json", dir.display())))
}

/// The shard files a `model.safetensors.index.json` names, sorted and deduplicated; each must be
/// a plain relative path inside the model folder (checked by [`safe_relative`]).
pub fn shard_names(index_json: &str) -> std::result::Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_str(index_json).map_err(|e| format!("invalid JSON: {e}"))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or("no `weight_map` object")?;
    let mut files = Vec::new();
    for (tensor, f) in map {
        let f = f.as_str().ok_or_else(|| format!("weight_map entry `{tensor}` is not a file name"))?;
        if !safe_relative(f) {
            return Err(format!("shard name `{f}` (for `{tensor}`) leaves the model folder"));
        }
        files.push(f.to_string());
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err("the index names no shard".into());
    }
    Ok(files)
}

/// Whether `name`, which comes from a file or a server, is a relative path that stays inside the
/// folder it is joined to: no `..`, no absolute path or drive, no backslash, no empty or `.`
/// component, no control characters, at most 255 bytes per component.
pub fn safe_relative(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name.contains(['\\', ':'])
        && !name.chars().any(char::is_control)
        && name.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= 255)
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

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.st.get(&hf_name(name)?).ok().map(|v| v.shape().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_must_stay_inside_the_folder() {
        for bad in ["../x.safetensors", "/etc/passwd", "a/../../b", "a//b", "./a", "c:\\x", "a\\..\\b", "", "a\nb"] {
            let idx = serde_json::json!({"weight_map": {"t": bad}}).to_string();
            assert!(shard_names(&idx).is_err(), "{bad:?} accepted");
        }
        let idx = serde_json::json!({"weight_map": {"a": "m-2.safetensors", "b": "sub/m-1.safetensors", "c": "m-2.safetensors"}});
        assert_eq!(shard_names(&idx.to_string()).unwrap(), ["m-2.safetensors", "sub/m-1.safetensors"]);
        assert!(shard_names(r#"{"weight_map": {"t": 5}}"#).is_err());
        assert!(shard_names(r#"{"weight_map": {}}"#).is_err());
    }
}
