//! GGUF loader (llama and qwen2 architectures): metadata → config, tensors dequantized into the
//! 16-bit master, Q/K un-permuted from llama.cpp's interleaved-RoPE layout.

use super::config::LlamaConfig;
use super::weights::{check_shape, WeightSource};
use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// An open GGUF file.
pub struct GgufSource {
    path: PathBuf,
    reader: BufReader<File>,
    content: Content,
    arch: String,
    n_heads: usize,
    n_kv_heads: usize,
}

impl GgufSource {
    /// Opens `path`, reads its header and checks every tensor lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut reader = BufReader::new(file);
        let content = read_content(&mut reader)
            .map_err(|e| Error::input(format!("{}: not a readable GGUF file: {e}", path.display())))?;
        for (name, info) in &content.tensor_infos {
            // A zero or overflowing element count makes candle's tensor reader build slices from a
            // dangling pointer (found by fuzzing): refuse such headers before any read.
            let n = info.shape.dims().iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n > 0);
            let Some(n) = n else {
                return Err(Error::input(format!(
                    "{}: corrupt GGUF: tensor `{name}` has shape {:?}",
                    path.display(),
                    info.shape.dims()
                )));
            };
            let bytes = (n / info.ggml_dtype.block_size().max(1)).saturating_mul(info.ggml_dtype.type_size()) as u64;
            let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(bytes);
            if end > len {
                return Err(Error::input(format!(
                    "{}: truncated or corrupt GGUF: tensor `{name}` ends at byte {end}, the file has {len}",
                    path.display()
                )));
            }
        }
        let arch = meta_str(&content, "general.architecture").unwrap_or_else(|| "llama".into());
        let mut src = Self { path: path.to_path_buf(), reader, content, arch, n_heads: 0, n_kv_heads: 0 };
        let cfg = src.config()?;
        src.n_heads = cfg.num_attention_heads;
        src.n_kv_heads = cfg.num_key_value_heads;
        Ok(src)
    }

    /// The metadata of the file.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// The architecture config from the `{arch}.*` metadata keys.
    pub fn config(&self) -> Result<LlamaConfig> {
        let a = self.arch.as_str();
        if !matches!(a, "llama" | "qwen2" | "mistral") {
            return Err(self.err(format!("unsupported architecture `{a}` (supported: llama, qwen2)")));
        }
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(self.err("llama3 rope frequency factors (rope_freqs.weight) are not supported for GGUF yet; use the Hugging Face folder".into()));
        }
        let u = |k: &str| -> Result<usize> {
            meta_u64(&self.content, &format!("{a}.{k}"))
                .map(|v| v as usize)
                .ok_or_else(|| self.err(format!("missing metadata `{a}.{k}`")))
        };
        let f = |k: &str, d: f64| meta_f64(&self.content, &format!("{a}.{k}")).unwrap_or(d);
        let hidden = u("embedding_length")?;
        let heads = u("attention.head_count")?;
        let vocab = match self.content.tensor_infos.get("token_embd.weight").map(|i| i.shape.dims()) {
            Some(&[vocab, h]) if h == hidden => vocab,
            Some(dims) => {
                return Err(
                    self.err(format!("tensor `token_embd.weight` has shape {dims:?}, expected [vocab, {hidden}]"))
                )
            }
            None => return Err(self.err("missing tensor `token_embd.weight`".into())),
        };
        // The forward has one head size for keys and values; a file saying otherwise, or one whose
        // width does not split into its heads, is refused naming the key.
        let head_dim = match (u("attention.key_length").ok(), u("attention.value_length").ok()) {
            (Some(k), Some(v)) if k != v => {
                return Err(self.err(format!("{a}.attention.key_length ({k}) differs from {a}.attention.value_length ({v})")))
            }
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) if heads > 0 && !hidden.is_multiple_of(heads) => {
                return Err(self.err(format!(
                    "{a}.embedding_length ({hidden}) is not a multiple of {a}.attention.head_count ({heads}) and no key_length is given"
                )))
            }
            (None, None) => hidden / heads.max(1),
        };
        let cfg = LlamaConfig {
            architecture: a.to_string(),
            hidden_size: hidden,
            intermediate_size: u("feed_forward_length")?,
            num_hidden_layers: u("block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: u("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            vocab_size: vocab,
            rms_norm_eps: f("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: f("rope.freq_base", 10_000.0),
            rope_scaling: None,
            max_position_embeddings: u("context_length").unwrap_or(2048),
            tie_word_embeddings: !self.content.tensor_infos.contains_key("output.weight"),
            attention_bias: self.content.tensor_infos.contains_key("blk.0.attn_q.bias"),
            bos_token_id: meta_u64(&self.content, "tokenizer.ggml.bos_token_id").map(|v| v as u32),
        };
        cfg.validate().map_err(|e| self.err(e.to_string()))?;
        Ok(cfg)
    }

    fn err(&self, msg: String) -> Error {
        Error::input(format!("{}: {msg}", self.path.display()))
    }
}

impl WeightSource for GgufSource {
    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        // Check the header's shape before reading, so a corrupt file never reaches the dequantizer.
        match self.content.tensor_infos.get(name) {
            Some(info) if info.shape.dims() != shape => {
                return Err(self.err(format!("tensor `{name}` has shape {:?}, expected {shape:?}", info.shape.dims())))
            }
            None => return Err(self.err(format!("missing tensor `{name}`"))),
            Some(_) => {}
        }
        let q = self
            .content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| self.err(format!("cannot read tensor `{name}`: {e}")))?;
        let w = q.dequantize(&Device::Cpu)?;
        let origin = self.path.display().to_string();
        check_shape(&w, name, shape, &origin)?;
        // llama.cpp stores Q/K rows permuted for its interleaved RoPE; qwen2 uses NeoX RoPE unpermuted.
        let w = match (self.arch.as_str(), name.rsplit('.').nth(1)) {
            ("llama" | "mistral", Some("attn_q")) => unpermute(&w, self.n_heads)?,
            ("llama" | "mistral", Some("attn_k")) => unpermute(&w, self.n_kv_heads)?,
            _ => w,
        };
        Ok(w.to_dtype(dtype)?)
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.content.tensor_infos.get(name).map(|i| i.shape.dims().to_vec())
    }
}

/// candle's reader panics on some corrupt headers (e.g. `general.alignment = 0` divides by zero,
/// found by fuzzing): turn that into an error, with the panic message kept off stderr.
fn read_content(reader: &mut BufReader<File>) -> std::result::Result<Content, String> {
    super::gguf_header::check(reader)?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Content::read(reader)));
    std::panic::set_hook(hook);
    match r {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(crate::error::one_line(&e.to_string())),
        Err(p) => {
            let msg = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            Err(format!("corrupt header ({})", msg.unwrap_or_else(|| "reader panicked".into())))
        }
    }
}

/// Inverse of llama.cpp's `permute`: GGUF rows (head, pair, 2) → Hugging Face rows (head, 2, pair).
/// Works for weights `[out, in]` and biases `[out]`.
pub fn unpermute(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let out = dims[0];
    let rest: usize = dims[1..].iter().product();
    let half = out / n_heads / 2;
    // (out, rest) → (heads, half, 2, rest) → (heads, 2, half, rest) → (out, rest)
    let t = w.reshape((n_heads, half, 2, rest))?.transpose(1, 2)?.contiguous()?;
    Ok(t.reshape(dims)?)
}

fn meta<'a>(c: &'a Content, k: &str) -> Option<&'a Value> {
    c.metadata.get(k)
}

/// A string metadata value.
pub fn meta_str(c: &Content, k: &str) -> Option<String> {
    meta(c, k)?.to_string().ok().cloned()
}

fn meta_u64(c: &Content, k: &str) -> Option<u64> {
    let v = meta(c, k)?;
    v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from))
}

fn meta_f64(c: &Content, k: &str) -> Option<f64> {
    let v = meta(c, k)?;
    v.to_f32().ok().map(f64::from).or_else(|| v.to_f64().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (heads, hd, inp) = (3, 8, 5);
        let w =
            Tensor::arange(0f32, (heads * hd * inp) as f32, &Device::Cpu).unwrap().reshape((heads * hd, inp)).unwrap();
        // llama.cpp convert: reshape(heads, 2, hd/2, in).swapaxes(1, 2)
        let permuted = w.reshape((heads, 2, hd / 2, inp)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap();
        let permuted = permuted.reshape((heads * hd, inp)).unwrap();
        let back = unpermute(&permuted, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), w.to_vec2::<f32>().unwrap());
    }
}
