//! Rotary position embeddings (Hugging Face "rotate half" layout), with Llama 3 frequency scaling.

use super::config::LlamaConfig;
use candle_core::{DType, Device, Result, Tensor};

/// Precomputed `cos`/`sin` tables `[max_pos, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    /// `0..max_pos` (u32) on the device: a kernel reads its start position from here, with no
    /// upload a call.
    positions: Tensor,
}

/// The inverse frequencies, scaled as Llama 3.1+ does for long contexts.
pub fn inv_freqs(cfg: &LlamaConfig) -> Vec<f32> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d as f64)).collect();
    let Some(s) = &cfg.rope_scaling else {
        return base.into_iter().map(|f| f as f32).collect();
    };
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_wavelen = old_ctx / s.low_freq_factor;
    let high_wavelen = old_ctx / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let f = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            };
            f as f32
        })
        .collect()
}

impl Rope {
    /// Tables for positions `0..max_pos`.
    pub fn new(cfg: &LlamaConfig, max_pos: usize, dtype: DType, device: &Device) -> Result<Self> {
        let inv = inv_freqs(cfg);
        let half = inv.len();
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let positions = Tensor::arange(0u32, max_pos as u32, device)?;
        let pos = positions.to_dtype(DType::F32)?.reshape((max_pos, 1))?;
        // (max_pos, 1) × (1, half) → (max_pos, half)
        let freqs = pos.matmul(&inv)?;
        Ok(Self { cos: freqs.cos()?.to_dtype(dtype)?, sin: freqs.sin()?.to_dtype(dtype)?, positions })
    }

    /// Rotates `xs` `[b, heads, seq_len, head_dim]` for positions `start_pos..start_pos+seq_len`.
    pub fn apply(&self, xs: &Tensor, start_pos: usize) -> Result<Tensor> {
        let (_b, _h, seq_len, _d) = xs.dims4()?;
        let cos = self.cos.narrow(0, start_pos, seq_len)?;
        let sin = self.sin.narrow(0, start_pos, seq_len)?;
        candle_nn::rotary_emb::rope(&xs.contiguous()?, &cos, &sin)
    }

    /// `[1]` (u32, on the device) holding `pos`, which must be below [`Rope::max_pos`].
    pub fn position(&self, pos: usize) -> Result<Tensor> {
        self.positions.narrow(0, pos, 1)
    }

    /// The `cos` and `sin` tables `[max_pos, head_dim / 2]`.
    pub fn tables(&self) -> [&Tensor; 2] {
        [&self.cos, &self.sin]
    }

    /// Positions covered by the tables.
    pub fn max_pos(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }
}
