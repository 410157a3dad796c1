//! Architecture hyper-parameters of a llama-family model, from GGUF metadata, config.json or a preset.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Llama 3 style RoPE frequency scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

impl Llama3RopeScaling {
    /// The llama3 formula divides by `factor` and by `high_freq_factor - low_freq_factor`.
    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::input(format!("invalid model config: rope_scaling.{m}")));
        for (key, v) in [
            ("factor", self.factor),
            ("low_freq_factor", self.low_freq_factor),
            ("high_freq_factor", self.high_freq_factor),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{key} must be a finite number > 0 (got {v})"));
            }
        }
        if self.high_freq_factor <= self.low_freq_factor {
            return bad(format!(
                "high_freq_factor ({}) must be larger than low_freq_factor ({})",
                self.high_freq_factor, self.low_freq_factor
            ));
        }
        if self.original_max_position_embeddings == 0 || self.original_max_position_embeddings > 1 << 24 {
            return bad(format!(
                "original_max_position_embeddings must be between 1 and 2²⁴ (got {})",
                self.original_max_position_embeddings
            ));
        }
        Ok(())
    }
}

/// Everything the forward needs to know about the architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama`, `mistral`, `qwen2`: only informative (and decides Q/K bias).
    pub architecture: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Qwen2 has biases on q/k/v.
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
}

impl LlamaConfig {
    /// Checks the invariants the forward relies on, so a bad config fails at load (exit 2, naming
    /// the key), not mid-run and never as NaN metrics.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::input(format!("invalid model config: {m}")));
        let sizes = [
            ("hidden_size", self.hidden_size, 1 << 20),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            ("num_hidden_layers", self.num_hidden_layers, 1024),
            ("num_attention_heads", self.num_attention_heads, 4096),
            ("num_key_value_heads", self.num_key_value_heads, 4096),
            ("head_dim", self.head_dim, 4096),
            ("vocab_size", self.vocab_size, 1 << 22),
            ("max_position_embeddings", self.max_position_embeddings, 1 << 24),
        ];
        // Far above any real model; keeps shape arithmetic and allocations from overflowing.
        for (key, v, max) in sizes {
            if v == 0 || v > max {
                return bad(format!("{key} must be between 1 and {max} (got {v})"));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return bad(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) || self.num_attention_heads * self.head_dim > 1 << 20 {
            return bad(format!("head_dim must be even and heads × head_dim ≤ 2²⁰ (got {})", self.head_dim));
        }
        let positive = [("rms_norm_eps", self.rms_norm_eps), ("rope_theta", self.rope_theta)];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{key} must be a finite number > 0 (got {v})"));
            }
        }
        if self.rms_norm_eps >= 1.0 {
            return bad(format!("rms_norm_eps must be < 1 (got {})", self.rms_norm_eps));
        }
        self.rope_scaling.as_ref().map_or(Ok(()), Llama3RopeScaling::validate)
    }
    /// Number of parameters of the linears, embeddings and norms.
    pub fn n_params(&self) -> u64 {
        let (h, l) = (self.hidden_size as u64, self.num_hidden_layers as u64);
        let block = self.block_linear_params() + 2 * h;
        let embd = self.vocab_size as u64 * h;
        let head = if self.tie_word_embeddings { 0 } else { embd };
        l * block + embd + head + h
    }

    /// Weights of one block's linears: q, k, v, o, gate, up and down.
    pub fn block_linear_params(&self) -> u64 {
        let (h, i) = (self.hidden_size as u64, self.intermediate_size as u64);
        let q = (self.num_attention_heads * self.head_dim) as u64;
        let kv = (self.num_key_value_heads * self.head_dim) as u64;
        h * q + 2 * h * kv + q * h + 3 * h * i
    }
}

/// The shape of a Hugging Face `config.json` for llama-family models; unknown fields are ignored
/// because real configs carry many that do not concern the forward.
#[derive(Debug, Deserialize)]
struct HfConfig {
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    model_type: Option<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<serde_json::Value>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
    attention_bias: Option<bool>,
    bos_token_id: Option<serde_json::Value>,
}

/// `original_max_position_embeddings` as a count: a whole number ≥ 1 (8192 when absent).
fn position_count(v: Option<f64>) -> std::result::Result<usize, String> {
    match v {
        None => Ok(8192),
        Some(x) if x.is_finite() && x >= 1.0 && x <= (1u64 << 24) as f64 && x.fract() == 0.0 => Ok(x as usize),
        Some(x) => Err(format!("original_max_position_embeddings must be a whole number between 1 and 2²⁴ (got {x})")),
    }
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}

impl LlamaConfig {
    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str, origin: &str) -> Result<Self> {
        let c: HfConfig = serde_json::from_str(text)
            .map_err(|e| Error::input(format!("{origin}: not a llama-family config.json: {e}")))?;
        let arch = c.model_type.clone().unwrap_or_else(|| "llama".into());
        if !matches!(arch.as_str(), "llama" | "mistral" | "qwen2") {
            return Err(Error::input(format!(
                "{origin}: unsupported model_type `{arch}` (supported: llama, mistral, qwen2)"
            )));
        }
        let _ = c.architectures;
        let rope_scaling = match &c.rope_scaling {
            Some(v) if v.get("rope_type").or(v.get("type")).and_then(|t| t.as_str()) == Some("llama3") => {
                // A present key must be a number: `"factor": "8"` or `null` is not silently the default.
                let f = |k: &str| v.get(k).map(|x| x.as_f64().unwrap_or(f64::NAN));
                Some(Llama3RopeScaling {
                    factor: f("factor").unwrap_or(8.0),
                    low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
                    high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
                    original_max_position_embeddings: position_count(f("original_max_position_embeddings"))
                        .map_err(|m| Error::input(format!("{origin}: invalid model config: rope_scaling.{m}")))?,
                })
            }
            _ => None,
        };
        let heads = c.num_attention_heads.max(1);
        if c.head_dim.is_none() && !c.hidden_size.is_multiple_of(heads) {
            return Err(Error::input(format!(
                "{origin}: invalid model config: hidden_size ({}) is not a multiple of num_attention_heads ({heads}) \
                 and no head_dim is given",
                c.hidden_size
            )));
        }
        let cfg = Self {
            attention_bias: c.attention_bias.unwrap_or(arch == "qwen2"),
            architecture: arch,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_hidden_layers: c.num_hidden_layers,
            num_attention_heads: c.num_attention_heads,
            num_key_value_heads: c.num_key_value_heads.unwrap_or(c.num_attention_heads),
            head_dim: c.head_dim.unwrap_or(c.hidden_size / heads),
            vocab_size: c.vocab_size,
            rms_norm_eps: c.rms_norm_eps,
            rope_theta: c.rope_theta,
            rope_scaling,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            bos_token_id: c.bos_token_id.and_then(|v| v.as_u64()).map(|v| v as u32),
        };
        cfg.validate().map_err(|e| Error::input(format!("{origin}: {e}")))?;
        Ok(cfg)
    }

    /// A named preset of a real architecture, for synthetic-weight speed and memory work.
    pub fn preset(name: &str) -> Option<Self> {
        let llama32 = |h, i, l, heads, kv, tie| Self {
            architecture: "llama".into(),
            hidden_size: h,
            intermediate_size: i,
            num_hidden_layers: l,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim: h / heads,
            vocab_size: 128_256,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: Some(Llama3RopeScaling {
                factor: if l >= 32 { 8.0 } else { 32.0 },
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            max_position_embeddings: 131_072,
            tie_word_embeddings: tie,
            attention_bias: false,
            bos_token_id: Some(128_000),
        };
        Some(match name {
            "smollm2-135m" => Self {
                architecture: "llama".into(),
                hidden_size: 576,
                intermediate_size: 1536,
                num_hidden_layers: 30,
                num_attention_heads: 9,
                num_key_value_heads: 3,
                head_dim: 64,
                vocab_size: 49_152,
                rms_norm_eps: 1e-5,
                rope_theta: 100_000.0,
                rope_scaling: None,
                max_position_embeddings: 8192,
                tie_word_embeddings: true,
                attention_bias: false,
                bos_token_id: Some(1),
            },
            "llama-3.2-1b" => llama32(2048, 8192, 16, 32, 8, true),
            "llama-3.2-3b" => llama32(3072, 8192, 28, 24, 8, true),
            "llama-3.1-8b" => llama32(4096, 14336, 32, 32, 8, false),
            "tiny" => Self {
                architecture: "llama".into(),
                hidden_size: 64,
                intermediate_size: 128,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                num_key_value_heads: 2,
                head_dim: 16,
                vocab_size: 256,
                rms_norm_eps: 1e-5,
                rope_theta: 10_000.0,
                rope_scaling: None,
                max_position_embeddings: 512,
                tie_word_embeddings: true,
                attention_bias: false,
                bos_token_id: Some(1),
            },
            _ => return None,
        })
    }

    /// Names accepted by [`LlamaConfig::preset`].
    pub const PRESETS: [&'static str; 5] = ["smollm2-135m", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "tiny"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_sized_like_the_real_models() {
        for p in LlamaConfig::PRESETS {
            LlamaConfig::preset(p).unwrap().validate().unwrap();
        }
        let n = LlamaConfig::preset("llama-3.2-3b").unwrap().n_params();
        assert!((3.1e9..3.3e9).contains(&(n as f64)), "{n}");
        let n = LlamaConfig::preset("llama-3.1-8b").unwrap().n_params();
        assert!((7.9e9..8.1e9).contains(&(n as f64)), "{n}");
        let n = LlamaConfig::preset("smollm2-135m").unwrap().n_params();
        assert!((1.3e8..1.4e8).contains(&(n as f64)), "{n}");
    }

    #[test]
    fn configs_that_would_give_nan_metrics_are_refused_naming_the_key() {
        let base = serde_json::json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8192}
        });
        LlamaConfig::from_hf_json(&base.to_string(), "c.json").unwrap();
        let cases: [(&str, serde_json::Value, &str); 10] = [
            ("/rope_scaling/factor", 0.0.into(), "rope_scaling.factor"),
            ("/rope_scaling/factor", (-2.0).into(), "rope_scaling.factor"),
            ("/rope_scaling/factor", "8".into(), "rope_scaling.factor"),
            ("/rope_scaling/high_freq_factor", 1.0.into(), "high_freq_factor"),
            ("/rope_scaling/original_max_position_embeddings", 0.into(), "original_max_position_embeddings"),
            ("/rms_norm_eps", 0.0.into(), "rms_norm_eps"),
            ("/rms_norm_eps", (-1e-5).into(), "rms_norm_eps"),
            ("/rope_theta", 0.0.into(), "rope_theta"),
            ("/num_attention_heads", 0.into(), "num_attention_heads"),
            ("/hidden_size", 66.into(), "not a multiple of num_attention_heads"),
        ];
        for (ptr, v, want) in cases {
            let mut c = base.clone();
            *c.pointer_mut(ptr).unwrap() = v.clone();
            let e = LlamaConfig::from_hf_json(&c.to_string(), "c.json").unwrap_err();
            assert!(e.to_string().contains(want) && e.to_string().contains("c.json"), "{ptr}={v}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
        let mut c = LlamaConfig::preset("tiny").unwrap();
        c.rms_norm_eps = f64::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("rms_norm_eps"));
        c.rms_norm_eps = 1e-5;
        c.rope_theta = f64::INFINITY;
        assert!(c.validate().unwrap_err().to_string().contains("rope_theta"));
    }

    #[test]
    fn hf_config_missing_field_names_it() {
        let err = LlamaConfig::from_hf_json(r#"{"hidden_size": 64}"#, "x/config.json").unwrap_err();
        assert!(err.to_string().contains("intermediate_size"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }
}
