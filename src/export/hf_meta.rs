//! GGUF metadata for a Hugging Face folder: the architecture keys from `config.json` and a
//! `gpt2`-style BPE tokenizer from `tokenizer.json`, as llama.cpp's `convert_hf_to_gguf.py` writes
//! them for llama-family models.

use crate::error::{Error, Result};
use crate::model::LlamaConfig;
use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;
use std::path::Path;

/// llama.cpp token types: normal, control (special added tokens), user-defined, unused (padding).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Every metadata key for `cfg` and the folder's `tokenizer.json` (and `config.json`'s eos id).
pub fn metadata(cfg: &LlamaConfig, dir: &Path) -> Result<Vec<(String, Value)>> {
    let a = cfg.architecture.as_str();
    let u = |v: usize| Value::U32(v as u32);
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(name)),
        ("general.quantization_version".into(), Value::U32(2)),
        (format!("{a}.context_length"), u(cfg.max_position_embeddings)),
        (format!("{a}.embedding_length"), u(cfg.hidden_size)),
        (format!("{a}.block_count"), u(cfg.num_hidden_layers)),
        (format!("{a}.feed_forward_length"), u(cfg.intermediate_size)),
        (format!("{a}.attention.head_count"), u(cfg.num_attention_heads)),
        (format!("{a}.attention.head_count_kv"), u(cfg.num_key_value_heads)),
        (format!("{a}.attention.key_length"), u(cfg.head_dim)),
        (format!("{a}.attention.value_length"), u(cfg.head_dim)),
        (format!("{a}.rope.dimension_count"), u(cfg.head_dim)),
        (format!("{a}.rope.freq_base"), Value::F32(cfg.rope_theta as f32)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(cfg.rms_norm_eps as f32)),
        (format!("{a}.vocab_size"), u(cfg.vocab_size)),
    ];
    let tok_path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&tok_path).map_err(|e| Error::io(&tok_path, e))?;
    let tok: Json =
        serde_json::from_str(&text).map_err(|e| Error::input(format!("{}: invalid JSON: {e}", tok_path.display())))?;
    m.extend(tokenizer(&tok, cfg.vocab_size, &tok_path.display().to_string())?);
    if let Some(bos) = cfg.bos_token_id {
        m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)));
    }
    if let Some(eos) = eos_id(dir) {
        m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
    }
    Ok(m)
}

/// `eos_token_id` of `config.json` (a number, or the first of a list).
fn eos_id(dir: &Path) -> Option<u32> {
    let v: Json = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).ok()?).ok()?;
    let e = v.get("eos_token_id")?;
    e.as_u64().or_else(|| e.as_array()?.first()?.as_u64()).map(|x| x as u32)
}

/// The `tokenizer.ggml.*` keys of a byte-level BPE `tokenizer.json`, padded to `vocab` tokens.
pub fn tokenizer(tok: &Json, vocab: usize, origin: &str) -> Result<Vec<(String, Value)>> {
    let err = |m: &str| Error::input(format!("{origin}: {m}"));
    let model = tok.get("model").ok_or_else(|| err("no `model`"))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") || !tok.to_string().contains("\"ByteLevel\"") {
        return Err(err("export supports byte-level BPE tokenizers (gpt2 style) only"));
    }
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab];
    let mut put = |id: u64, s: &str, ty: i32| -> Result<()> {
        let slot = tokens.get_mut(id as usize).ok_or_else(|| err(&format!("token id {id} ≥ vocab size {vocab}")))?;
        *slot = Some((s.to_string(), ty));
        Ok(())
    };
    for (s, id) in model.get("vocab").and_then(Json::as_object).ok_or_else(|| err("no `model.vocab` object"))? {
        put(id.as_u64().ok_or_else(|| err("a vocab id is not a number"))?, s, NORMAL)?;
    }
    for t in tok.get("added_tokens").and_then(Json::as_array).into_iter().flatten() {
        let (Some(id), Some(s)) = (t.get("id").and_then(Json::as_u64), t.get("content").and_then(Json::as_str)) else {
            return Err(err("an added token has no id or content"));
        };
        let special = t.get("special").and_then(Json::as_bool).unwrap_or(false);
        put(id, s, if special { CONTROL } else { USER_DEFINED })?;
    }
    let (names, types): (Vec<Value>, Vec<Value>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (s, ty) = t.unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED));
            (Value::String(s), Value::I32(ty))
        })
        .unzip();
    let merges: Vec<Value> = model
        .get("merges")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Json::String(s) => Some(s.clone()),
            Json::Array(p) => Some(format!("{} {}", p.first()?.as_str()?, p.get(1)?.as_str()?)),
            _ => None,
        })
        .map(Value::String)
        .collect();
    // An empty merge list is still written (llama.cpp and minilab require the key); candle types
    // an empty array as u32, which readers accept since it has no elements.
    Ok(vec![
        ("tokenizer.ggml.model".to_string(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("default".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(names)),
        ("tokenizer.ggml.token_type".into(), Value::Array(types)),
        ("tokenizer.ggml.merges".into(), Value::Array(merges)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn byte_level_bpe_becomes_gpt2_metadata() {
        let tok = json!({
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]},
            "pre_tokenizer": {"type": "ByteLevel"},
            "added_tokens": [{"id": 3, "content": "<s>", "special": true}]
        });
        let m = tokenizer(&tok, 5, "t").unwrap();
        let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
        let Value::Array(tokens) = get("tokenizer.ggml.tokens") else { panic!() };
        assert_eq!(tokens.len(), 5);
        assert_eq!(tokens[3].to_string().unwrap(), "<s>");
        assert_eq!(tokens[4].to_string().unwrap(), "[PAD4]");
        let Value::Array(types) = get("tokenizer.ggml.token_type") else { panic!() };
        assert_eq!((types[0].to_i32().unwrap(), types[3].to_i32().unwrap(), types[4].to_i32().unwrap()), (1, 3, 5));
        let Value::Array(merges) = get("tokenizer.ggml.merges") else { panic!() };
        assert_eq!(merges[0].to_string().unwrap(), "a b");
    }

    #[test]
    fn other_tokenizers_and_overflowing_ids_are_refused() {
        let wp = json!({"model": {"type": "WordPiece", "vocab": {}}});
        assert_eq!(tokenizer(&wp, 5, "t").unwrap_err().exit_code(), 2);
        let big = json!({"model": {"type": "BPE", "vocab": {"a": 9}}, "pre_tokenizer": {"type": "ByteLevel"}});
        assert!(tokenizer(&big, 5, "t").unwrap_err().to_string().contains("≥ vocab size"));
    }
}
