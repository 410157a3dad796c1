//! The model: config, loaders (GGUF, Hugging Face folder, hub, synthetic), tokenizer and the llama
//! forward with its KV cache, and its decode step captured as a CUDA graph.

pub mod config;
pub mod digest;
pub mod gguf;
mod gguf_header;
pub mod graph;
pub mod hub;
pub mod hub_download;
pub mod layer_id;
pub mod llama;
pub mod rope;
pub mod safetensors;
pub mod shapes;
pub mod synthetic;
pub mod tokenizer;
pub mod weights;

pub use config::LlamaConfig;
pub use graph::DecodeGraph;
pub use layer_id::{LayerId, LayerKind};
pub use llama::{Cache, Model};
pub use tokenizer::TextTokenizer;

use crate::error::{Error, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

/// Where a model comes from, parsed from `--model`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSpec {
    /// A `.gguf` file.
    Gguf(PathBuf),
    /// A Hugging Face folder.
    HfDir(PathBuf),
    /// A hub id such as `HuggingFaceTB/SmolLM2-135M`.
    Hub(String),
    /// `synthetic:NAME`: seeded random weights of a preset architecture.
    Synthetic(String),
}

impl ModelSpec {
    /// Parses a `--model` value: `synthetic:NAME`, an existing file or folder, else a hub id.
    pub fn parse(s: &str) -> Result<Self> {
        if let Some(name) = s.strip_prefix("synthetic:") {
            if LlamaConfig::preset(name).is_none() {
                return Err(Error::input(format!(
                    "unknown synthetic model `{name}` (known: {})",
                    LlamaConfig::PRESETS.join(", ")
                )));
            }
            return Ok(Self::Synthetic(name.to_string()));
        }
        let p = Path::new(s);
        if p.is_dir() {
            return Ok(Self::HfDir(p.to_path_buf()));
        }
        if p.is_file() || s.ends_with(".gguf") {
            if !p.exists() {
                return Err(Error::input(format!("{s}: model file not found")));
            }
            return Ok(Self::Gguf(p.to_path_buf()));
        }
        let looks_like_id = s.split('/').count() == 2 && !s.starts_with('.') && !s.starts_with('/');
        if looks_like_id {
            return Ok(Self::Hub(s.to_string()));
        }
        Err(Error::input(format!(
            "{s}: model path not found (expected a .gguf file, a model folder, a hub id or synthetic:NAME)"
        )))
    }

    /// A short name for reports and file names.
    pub fn short_name(&self) -> String {
        let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match self {
            Self::Gguf(p) | Self::HfDir(p) => stem(p),
            Self::Hub(id) => id.rsplit('/').next().unwrap_or(id).to_string(),
            Self::Synthetic(n) => format!("synthetic-{n}"),
        }
    }

    /// Whether the weights are random (no meaningful text metrics).
    pub fn is_synthetic(&self) -> bool {
        matches!(self, Self::Synthetic(_))
    }
}

/// A model with its tokenizer (synthetic models have none).
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Option<TextTokenizer>,
    pub spec: ModelSpec,
}

/// Loads a model in `dtype` on `device`; the 16-bit masters stay on the host.
pub fn load(spec: &ModelSpec, device: &Device, dtype: DType) -> Result<Loaded> {
    let master_dtype = dtype;
    let (model, tokenizer) = match spec {
        ModelSpec::Gguf(path) => {
            let mut src = gguf::GgufSource::open(path)?;
            let cfg = src.config()?;
            let tok = TextTokenizer::from_gguf(src.content(), &path.display().to_string(), cfg.bos_token_id)?;
            (Model::load(cfg, &mut src, device, master_dtype)?, Some(tok))
        }
        ModelSpec::HfDir(dir) => load_dir(dir, device, master_dtype)?,
        ModelSpec::Hub(id) => load_dir(&hub::fetch(id)?, device, master_dtype)?,
        ModelSpec::Synthetic(name) => {
            let cfg =
                LlamaConfig::preset(name).ok_or_else(|| Error::input(format!("unknown synthetic model `{name}`")))?;
            let mut src = synthetic::SyntheticSource::new(0x5EED);
            (Model::load(cfg, &mut src, device, master_dtype)?, None)
        }
    };
    Ok(Loaded { model, tokenizer, spec: spec.clone() })
}

fn load_dir(dir: &Path, device: &Device, dtype: DType) -> Result<(Model, Option<TextTokenizer>)> {
    let cfg = safetensors::SafetensorsSource::config(dir)?;
    let tok_path = dir.join("tokenizer.json");
    // `exists`, not `is_file`: a tokenizer.json that is a device or a folder is an error, not "no tokenizer".
    let tok = if tok_path.exists() { Some(TextTokenizer::from_file(&tok_path, cfg.bos_token_id)?) } else { None };
    let mut src = safetensors::SafetensorsSource::open(dir)?;
    Ok((Model::load(cfg, &mut src, device, dtype)?, tok))
}
