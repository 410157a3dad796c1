//! Names of the linear layers: GGUF style (`blk.3.attn_q`, `output`) with Hugging Face aliases.

use std::fmt;

/// Which linear of a transformer block (or the LM head).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerKind {
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// The LM head (tied with `token_embd` in many small models).
    Output,
}

impl LayerKind {
    /// The seven linears of a block, in forward order.
    pub const BLOCK: [LayerKind; 7] =
        [Self::AttnQ, Self::AttnK, Self::AttnV, Self::AttnOutput, Self::FfnGate, Self::FfnUp, Self::FfnDown];

    /// GGUF short name.
    pub fn gguf(self) -> &'static str {
        match self {
            Self::AttnQ => "attn_q",
            Self::AttnK => "attn_k",
            Self::AttnV => "attn_v",
            Self::AttnOutput => "attn_output",
            Self::FfnGate => "ffn_gate",
            Self::FfnUp => "ffn_up",
            Self::FfnDown => "ffn_down",
            Self::Output => "output",
        }
    }

    /// Hugging Face name inside `model.layers.N.`.
    pub fn hf(self) -> &'static str {
        match self {
            Self::AttnQ => "self_attn.q_proj",
            Self::AttnK => "self_attn.k_proj",
            Self::AttnV => "self_attn.v_proj",
            Self::AttnOutput => "self_attn.o_proj",
            Self::FfnGate => "mlp.gate_proj",
            Self::FfnUp => "mlp.up_proj",
            Self::FfnDown => "mlp.down_proj",
            Self::Output => "lm_head",
        }
    }

    /// Parses a kind from either naming (`attn_q`, `q_proj`, `self_attn.q_proj`, `lm_head`).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let last = s.rsplit('.').next().unwrap_or(s);
        [Self::BLOCK.as_slice(), &[Self::Output]]
            .concat()
            .into_iter()
            .find(|k| k.gguf() == s || k.hf() == s || k.hf().rsplit('.').next() == Some(last) && s == last)
    }
}

/// One linear layer of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId {
    /// Transformer block, `None` for the LM head.
    pub block: Option<usize>,
    pub kind: LayerKind,
}

impl LayerId {
    /// A linear of block `block`.
    pub fn block(block: usize, kind: LayerKind) -> Self {
        Self { block: Some(block), kind }
    }

    /// The LM head.
    pub fn output() -> Self {
        Self { block: None, kind: LayerKind::Output }
    }

    /// Parses `blk.N.attn_q`, `output`, `model.layers.N.self_attn.q_proj` or `lm_head`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_end_matches(".weight");
        if matches!(s, "output" | "lm_head") {
            return Some(Self::output());
        }
        let rest = s.strip_prefix("blk.").or_else(|| s.strip_prefix("model.layers."))?;
        let (n, kind) = rest.split_once('.')?;
        let kind = LayerKind::parse(kind).filter(|k| *k != LayerKind::Output)?;
        Some(Self::block(n.parse().ok()?, kind))
    }

    /// The Hugging Face name of this layer.
    pub fn hf_name(&self) -> String {
        match self.block {
            Some(b) => format!("model.layers.{b}.{}", self.kind.hf()),
            None => "lm_head".into(),
        }
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.block {
            Some(b) => write!(f, "blk.{b}.{}", self.kind.gguf()),
            None => f.write_str("output"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_namings_parse_to_the_same_id() {
        let id = LayerId::block(3, LayerKind::AttnQ);
        assert_eq!(LayerId::parse("blk.3.attn_q"), Some(id));
        assert_eq!(LayerId::parse("model.layers.3.self_attn.q_proj"), Some(id));
        assert_eq!(LayerId::parse("model.layers.3.self_attn.q_proj.weight"), Some(id));
        assert_eq!(LayerId::parse(&id.to_string()), Some(id));
        assert_eq!(LayerId::parse(&id.hf_name()), Some(id));
        assert_eq!(LayerId::parse("lm_head"), Some(LayerId::output()));
        assert_eq!(LayerId::parse("blk.x.attn_q"), None);
        assert_eq!(LayerId::parse("blk.1.attn_z"), None);
    }

    #[test]
    fn kinds_parse_from_short_names() {
        assert_eq!(LayerKind::parse("down_proj"), Some(LayerKind::FfnDown));
        assert_eq!(LayerKind::parse("ffn_down"), Some(LayerKind::FfnDown));
        assert_eq!(LayerKind::parse("mlp.down_proj"), Some(LayerKind::FfnDown));
        assert_eq!(LayerKind::parse("nope"), None);
    }
}
