//! `minilab export --gguf`: a mixed-precision GGUF written by minilab, for llama.cpp.
//!
//! Tensors are read through the same [`WeightSource`]s the loaders use (Hugging Face layout, 32-bit),
//! re-permuted to llama.cpp's interleaved-RoPE row order for Q and K, and quantized with candle's
//! GGML quantizers to the types [`super::tensor_types`] gives (the ones the llama-quantize lines
//! give, so both routes produce the same mix). Metadata is copied from a GGUF source, or built from
//! `config.json` and `tokenizer.json` for a Hugging Face folder.

use super::{GgmlType, TensorType};
use crate::error::{Error, Result};
use crate::model::gguf::GgufSource;
use crate::model::safetensors::SafetensorsSource;
use crate::model::weights::WeightSource;
use crate::model::{LlamaConfig, ModelSpec};
use crate::plan::PrecisionPlan;
use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Tensor};
use std::path::Path;

/// What [`export`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The plan's weight tensors and their types.
    pub types: Vec<TensorType>,
    /// All tensors in the file (norms included).
    pub n_tensors: usize,
    /// Size of the file.
    pub file_bytes: u64,
}

/// A model to export: config, weights and the GGUF metadata to write.
struct Source {
    cfg: LlamaConfig,
    weights: Box<dyn WeightSource>,
    metadata: Vec<(String, Value)>,
}

/// Keys not copied from a source GGUF: the writer aligns to 32 bytes, and the file type changes.
const DROPPED_KEYS: [&str; 2] = ["general.alignment", "general.file_type"];

fn open(spec: &ModelSpec) -> Result<Source> {
    match spec {
        ModelSpec::Gguf(path) => {
            let src = GgufSource::open(path)?;
            let cfg = src.config()?;
            let mut metadata: Vec<(String, Value)> = src
                .content()
                .metadata
                .iter()
                .filter(|(k, _)| !DROPPED_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            metadata.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Source { cfg, weights: Box::new(src), metadata })
        }
        ModelSpec::HfDir(dir) => open_dir(dir),
        ModelSpec::Hub(id) => open_dir(&crate::model::hub::fetch(id)?),
        ModelSpec::Synthetic(_) => Err(Error::input(
            "export: synthetic models have random weights and no tokenizer; export a .gguf file or a Hugging Face folder",
        )),
    }
}

fn open_dir(dir: &Path) -> Result<Source> {
    let cfg = SafetensorsSource::config(dir)?;
    let metadata = super::hf_meta::metadata(&cfg, dir)?;
    Ok(Source { cfg, weights: Box::new(SafetensorsSource::open(dir)?), metadata })
}

/// The candle quantizer for a type, or why there is none.
fn candle_dtype(t: GgmlType) -> Result<GgmlDType> {
    Ok(match t {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4K => GgmlDType::Q4K,
        GgmlType::Iq4Nl => return Err(Error::input(
            "--gguf-4bit iq4_nl: candle 0.11.1 has no IQ4_NL quantizer; use q4_0 or q4_k here, or run llama-quantize \
                 with the plan's --tensor-type-file (plan.tensor-types.list) for iq4_nl",
        )),
    })
}

/// llama.cpp's `permute` of Q/K rows for interleaved RoPE: Hugging Face rows (head, 2, pair) →
/// GGUF rows (head, pair, 2). The inverse of [`crate::model::gguf::unpermute`].
pub fn permute(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rest: usize = dims[1..].iter().product();
    let half = dims[0] / n_heads / 2;
    let t = w.reshape((n_heads, 2, half, rest))?.transpose(1, 2)?.contiguous()?;
    Ok(t.reshape(dims)?)
}

/// Every tensor of the GGUF in file order, with its shape (`[out, in]` for linears).
fn tensor_list(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
    let mut l = vec![("token_embd.weight".to_string(), vec![v, h]), ("output_norm.weight".into(), vec![h])];
    if !cfg.tie_word_embeddings {
        l.push(("output.weight".into(), vec![v, h]));
    }
    for b in 0..cfg.num_hidden_layers {
        let n = |s: &str| format!("blk.{b}.{s}");
        l.push((n("attn_norm.weight"), vec![h]));
        l.push((n("attn_q.weight"), vec![q, h]));
        l.push((n("attn_k.weight"), vec![kv, h]));
        l.push((n("attn_v.weight"), vec![kv, h]));
        if cfg.attention_bias {
            l.extend([(n("attn_q.bias"), vec![q]), (n("attn_k.bias"), vec![kv]), (n("attn_v.bias"), vec![kv])]);
        }
        l.push((n("attn_output.weight"), vec![h, q]));
        l.push((n("ffn_norm.weight"), vec![h]));
        l.push((n("ffn_gate.weight"), vec![i, h]));
        l.push((n("ffn_up.weight"), vec![i, h]));
        l.push((n("ffn_down.weight"), vec![h, i]));
    }
    l
}

/// One tensor read, put back into GGUF row order and quantized.
fn encode(src: &mut Source, name: &str, shape: &[usize], ty: GgmlType) -> Result<QTensor> {
    let t = src.weights.tensor(name, shape, DType::F32)?;
    // qwen2 uses NeoX RoPE and keeps Hugging Face row order; llama-family GGUFs are permuted.
    let interleaved = matches!(src.cfg.architecture.as_str(), "llama" | "mistral");
    let t = match name.split('.').nth(2) {
        Some("attn_q") if interleaved => permute(&t, src.cfg.num_attention_heads)?,
        Some("attn_k") if interleaved => permute(&t, src.cfg.num_key_value_heads)?,
        _ => t,
    };
    QTensor::quantize(&t, candle_dtype(ty)?)
        .map_err(|e| Error::Runtime(format!("quantizing `{name}` to {}: {e}", ty.name())))
}

/// The model's config as the export sees it (tied when the weights have no separate LM head).
pub fn model_config(spec: &ModelSpec) -> Result<LlamaConfig> {
    let src = open(spec)?;
    let mut cfg = src.cfg;
    cfg.tie_word_embeddings = cfg.tie_word_embeddings || !src.weights.has("output.weight");
    Ok(cfg)
}

/// Writes the GGUF of `spec` under `plan` to `out` (atomically) with `four_bit` for nf4 layers.
pub fn export(
    spec: &ModelSpec,
    plan: &PrecisionPlan,
    origin: &str,
    four_bit: super::FourBit,
    out: &Path,
) -> Result<Written> {
    check_writable(out)?;
    let mut src = open(spec)?;
    src.cfg.tie_word_embeddings = src.cfg.tie_word_embeddings || !src.weights.has("output.weight");
    if src.cfg.rope_scaling.is_some() {
        return Err(Error::input("export: llama3 rope scaling (rope_freqs.weight) is not exported yet"));
    }
    let assignment = plan.resolve(&super::layer_ids(&src.cfg), origin)?;
    let types = super::tensor_types(&assignment, &src.cfg, four_bit)?;
    for t in &types {
        candle_dtype(t.ty)?; // refuse an unwritable type before any work
    }
    let list = tensor_list(&src.cfg);
    let pb = crate::progress::bar(list.len() as u64, "quantizing");
    let mut tensors = Vec::with_capacity(list.len());
    for (name, shape) in &list {
        let ty = types.iter().find(|t| &t.name == name).map_or(GgmlType::F32, |t| t.ty);
        tensors.push((name.clone(), encode(&mut src, name, shape, ty)?));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut metadata = src.metadata;
    metadata.push(("general.quantized_by".into(), Value::String(format!("minilab {}", env!("CARGO_PKG_VERSION")))));
    let meta: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    // The whole file is built in memory so that it can be written atomically in one go.
    let mut buf = std::io::Cursor::new(Vec::new());
    candle_core::quantized::gguf_file::write(&mut buf, &meta, &refs)?;
    let bytes = buf.into_inner();
    crate::report::write_atomic(out, &bytes).map_err(|e| Error::io(out, e))?;
    Ok(Written { types, n_tensors: tensors.len(), file_bytes: bytes.len() as u64 })
}

/// Fails early (exit 2) when `out`'s folder does not exist or `out` is a folder.
fn check_writable(out: &Path) -> Result<()> {
    let dir = out.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::input(format!("{}: the output folder {} does not exist", out.display(), dir.display())));
    }
    if out.is_dir() {
        return Err(Error::input(format!("{}: is a folder, expected a .gguf file path", out.display())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn permute_is_the_inverse_of_the_loaders_unpermute() {
        let w = Tensor::arange(0f32, 4.0 * 8.0 * 3.0, &Device::Cpu).unwrap().reshape((32, 3)).unwrap();
        let back = crate::model::gguf::unpermute(&permute(&w, 4).unwrap(), 4).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
        assert_ne!(permute(&w, 4).unwrap().to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn iq4_nl_is_refused_with_a_way_out() {
        let e = candle_dtype(GgmlType::Iq4Nl).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("tensor-type-file"));
    }
}
