//! Where weights come from: a source hands out host tensors by GGUF name, loaded lazily so a model
//! is never held twice.

use crate::error::{Error, Result};
use candle_core::{DType, Tensor};

/// A provider of host tensors named as in GGUF (`blk.0.attn_q.weight`, `token_embd.weight`, …).
pub trait WeightSource {
    /// The tensor `name` in `dtype`, checked against `shape` (linears are `[out, in]`).
    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor>;
    /// Whether the source has tensor `name`.
    fn has(&self, name: &str) -> bool;
    /// The shape the file's header gives tensor `name`, read without loading it (`None` when
    /// unknown or generated on demand).
    fn dims(&self, _name: &str) -> Option<Vec<usize>> {
        None
    }
}

/// Fails with a message naming the tensor and the file when a tensor has an unexpected shape.
pub fn check_shape(t: &Tensor, name: &str, shape: &[usize], origin: &str) -> Result<()> {
    if t.dims() != shape {
        return Err(Error::input(format!(
            "{origin}: tensor `{name}` has shape {:?}, expected {shape:?} from the model config",
            t.dims()
        )));
    }
    Ok(())
}

/// The Hugging Face name of a GGUF tensor name.
pub fn hf_name(gguf: &str) -> Option<String> {
    let simple = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (n, rest) = rest.split_once('.')?;
    let (layer, suffix) = rest.rsplit_once('.')?;
    let hf = match layer {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{n}.{hf}.{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hf() {
        assert_eq!(hf_name("blk.2.attn_q.weight").unwrap(), "model.layers.2.self_attn.q_proj.weight");
        assert_eq!(hf_name("blk.2.attn_q.bias").unwrap(), "model.layers.2.self_attn.q_proj.bias");
        assert_eq!(hf_name("blk.0.ffn_norm.weight").unwrap(), "model.layers.0.post_attention_layernorm.weight");
        assert_eq!(hf_name("token_embd.weight").unwrap(), "model.embed_tokens.weight");
        assert_eq!(hf_name("blk.0.nope.weight"), None);
    }
}
