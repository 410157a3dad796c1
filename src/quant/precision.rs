//! The one enum of weight formats. The precision choice is data, never a second forward.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Storage format of one linear layer's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// The model's 16-bit master weights (f16 or bf16, as `--dtype` says).
    F16,
    /// Symmetric int8, one absmax scale per output row (LLM.int8() weight format).
    Int8,
    /// bitsandbytes NF4, blocks of 64, one f32 absmax per block.
    Nf4,
    /// NF4 with the absmax values quantized to 8 bits in blocks of 256 (QLoRA double quant).
    Nf4Dq,
}

impl Precision {
    /// Every format, from the most to the least precise.
    pub const ALL: [Precision; 4] = [Self::F16, Self::Int8, Self::Nf4, Self::Nf4Dq];

    /// The name used in plans, configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::F16 => "f16",
            Self::Int8 => "int8",
            Self::Nf4 => "nf4",
            Self::Nf4Dq => "nf4_dq",
        }
    }

    /// Exact bytes needed to store an `out_features × in_features` weight in this format.
    pub fn weight_bytes(self, out_features: usize, in_features: usize) -> u64 {
        let n = (out_features * in_features) as u64;
        match self {
            Self::F16 => 2 * n,
            // one byte per weight + one f32 scale per output row
            Self::Int8 => n + 4 * out_features as u64,
            // two codes per byte + one f32 absmax per block of 64
            Self::Nf4 => n.div_ceil(2) + 4 * n.div_ceil(64),
            // two codes per byte + one u8 absmax per block of 64 + one f32 scale per 256 blocks + the f32 offset
            Self::Nf4Dq => {
                let blocks = n.div_ceil(64);
                n.div_ceil(2) + blocks + 4 * blocks.div_ceil(256) + 4
            }
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for a format name that is not one of [`Precision::ALL`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown format `{0}` (expected one of: f16, int8, nf4, nf4_dq)")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f16" | "fp16" | "bf16" | "16bit" => Ok(Self::F16),
            "int8" | "i8" => Ok(Self::Int8),
            "nf4" => Ok(Self::Nf4),
            "nf4_dq" | "nf4-dq" | "nf4+dq" | "nf4_double_quant" => Ok(Self::Nf4Dq),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_weight_match_design_table() {
        let (o, i) = (4096, 4096);
        let n = (o * i) as f64;
        assert_eq!(Precision::F16.weight_bytes(o, i) as f64 / n, 2.0);
        assert!((Precision::Int8.weight_bytes(o, i) as f64 / n - (1.0 + 4.0 / i as f64)).abs() < 1e-12);
        assert!((Precision::Nf4.weight_bytes(o, i) as f64 / n - 0.5625).abs() < 1e-12);
        let dq = Precision::Nf4Dq.weight_bytes(o, i) as f64 / n;
        assert!((dq - 0.516).abs() < 1e-3, "{dq}");
    }

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("q5_k".parse::<Precision>().is_err());
    }
}
