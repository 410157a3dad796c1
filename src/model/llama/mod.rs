//! The llama-family forward: RMSNorm, RoPE, grouped-query attention, SwiGLU, tied or untied head.
//! Every linear is a [`SwitchableLinear`]; there is one forward whatever the formats.

mod attention;
mod cache;
mod decode;

use attention::Attention;
pub use cache::Cache;

use super::config::LlamaConfig;
use super::layer_id::{LayerId, LayerKind};
use super::rope::Rope;
use super::weights::WeightSource;
use crate::kernels;
use crate::quant::{Precision, SwitchableLinear};
use candle_core::{DType, Device, Module, Result, Tensor};

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: SwitchableLinear,
    up_proj: SwitchableLinear,
    down_proj: SwitchableLinear,
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if kernels::prefill_ops::enabled() {
            let act = SwitchableLinear::forward_silu_mul(&self.gate_proj, &self.up_proj, xs, None)?;
            return self.down_proj.forward(&act);
        }
        let [gate, up]: [Tensor; 2] = SwitchableLinear::forward_many(&[&self.gate_proj, &self.up_proj], xs)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("mlp: gate/up projections".into()))?;
        self.down_proj.forward(&(candle_nn::ops::silu(&gate)? * up)?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    attn_norm: Tensor,
    attn: Attention,
    ffn_norm: Tensor,
    mlp: Mlp,
}

/// A llama-family model whose every linear layer has its own precision.
#[derive(Debug, Clone)]
pub struct Model {
    cfg: LlamaConfig,
    /// `[vocab, hidden]` when untied; a tied model embeds through `lm_head.rows`.
    token_embd: Option<Tensor>,
    blocks: Vec<Block>,
    norm: Tensor,
    lm_head: SwitchableLinear,
    rope: Rope,
    eps: f64,
    device: Device,
    /// The weights' dtype (masters and dense layers).
    dtype: DType,
    /// The activations' dtype: `dtype` on GPUs; f32 on CPU, whose kernels read 16-bit weights but
    /// compute in f32 (as llama.cpp does), because CPUs have no fast 16-bit arithmetic.
    act_dtype: DType,
}

impl Model {
    /// Builds the model from a weight source (tensors by GGUF name, host masters).
    pub fn load(cfg: LlamaConfig, src: &mut dyn WeightSource, device: &Device, dtype: DType) -> crate::Result<Self> {
        cfg.validate()?;
        let act_dtype = if device.is_cpu() { DType::F32 } else { dtype };
        let (h, kv) = (cfg.hidden_size, cfg.num_key_value_heads * cfg.head_dim);
        let q = cfg.num_attention_heads * cfg.head_dim;
        let i = cfg.intermediate_size;
        let linear = |src: &mut dyn WeightSource,
                      name: String,
                      shape: (usize, usize),
                      bias: bool|
         -> crate::Result<SwitchableLinear> {
            let w = src.tensor(&format!("{name}.weight"), &[shape.0, shape.1], dtype)?;
            let b = if bias { Some(src.tensor(&format!("{name}.bias"), &[shape.0], dtype)?) } else { None };
            Ok(SwitchableLinear::new(w, b, device, act_dtype)?)
        };
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for n in 0..cfg.num_hidden_layers {
            let p = format!("blk.{n}");
            let bias = cfg.attention_bias;
            let mut attn = Attention {
                q_proj: linear(src, format!("{p}.attn_q"), (q, h), bias)?,
                k_proj: linear(src, format!("{p}.attn_k"), (kv, h), bias)?,
                v_proj: linear(src, format!("{p}.attn_v"), (kv, h), bias)?,
                o_proj: linear(src, format!("{p}.attn_output"), (h, q), false)?,
                n_heads: cfg.num_attention_heads,
                n_kv_heads: cfg.num_key_value_heads,
                head_dim: cfg.head_dim,
                qkv: None,
            };
            attn.restack()?;
            let mlp = Mlp {
                gate_proj: linear(src, format!("{p}.ffn_gate"), (i, h), false)?,
                up_proj: linear(src, format!("{p}.ffn_up"), (i, h), false)?,
                down_proj: linear(src, format!("{p}.ffn_down"), (h, i), false)?,
            };
            let norm = |src: &mut dyn WeightSource, name: String| -> crate::Result<Tensor> {
                Ok(src.tensor(&name, &[h], dtype)?.to_device(device)?.to_dtype(act_dtype)?)
            };
            let attn_norm = norm(src, format!("{p}.attn_norm.weight"))?;
            let ffn_norm = norm(src, format!("{p}.ffn_norm.weight"))?;
            blocks.push(Block { attn_norm, attn, ffn_norm, mlp });
        }
        let norm = src.tensor("output_norm.weight", &[h], dtype)?.to_device(device)?.to_dtype(act_dtype)?;
        let embd = src.tensor("token_embd.weight", &[cfg.vocab_size, h], dtype)?;
        let tied = cfg.tie_word_embeddings || !src.has("output.weight");
        let (token_embd, lm_head) = if tied {
            (None, SwitchableLinear::new(embd, None, device, act_dtype)?)
        } else {
            let head = src.tensor("output.weight", &[cfg.vocab_size, h], dtype)?;
            (Some(embd.to_device(device)?), SwitchableLinear::new(head, None, device, act_dtype)?)
        };
        let mut cfg = cfg;
        cfg.tie_word_embeddings = tied;
        let rope = Rope::new(&cfg, cfg.max_position_embeddings.min(1 << 17), act_dtype, device)?;
        let device = device.clone();
        Ok(Self { eps: cfg.rms_norm_eps, cfg, token_embd, blocks, norm, lm_head, rope, device, dtype, act_dtype })
    }

    /// Logits `[b, seq_len, vocab]` (f32) for every position of `tokens` `[b, seq_len]` (u32), which
    /// start at `start_pos`; appends to `cache`.
    pub fn forward(&self, tokens: &Tensor, start_pos: usize, cache: &mut Cache) -> Result<Tensor> {
        if self.takes_decode_step(tokens, start_pos, cache)? {
            return self.decode(tokens, start_pos, cache);
        }
        let xs = self.embed(tokens)?;
        let xs = self.forward_blocks(&xs, 0, start_pos, cache)?;
        self.head(&xs)
    }

    /// Logits `[b, vocab]` (f32) of the last position of `tokens` `[b, seq_len]` only: the blocks run
    /// over every position as in [`Model::forward`], the head over the last one. This is what a
    /// generation's first token needs, and what llama.cpp computes for a prompt; scoring every
    /// position (perplexity) needs [`Model::forward`].
    pub fn forward_last(&self, tokens: &Tensor, start_pos: usize, cache: &mut Cache) -> Result<Tensor> {
        if self.takes_decode_step(tokens, start_pos, cache)? {
            return self.decode(tokens, start_pos, cache)?.squeeze(1);
        }
        let Some(last) = tokens.dim(1)?.checked_sub(1) else {
            candle_core::bail!("an empty prompt has no last position")
        };
        let xs = self.embed(tokens)?;
        let xs = self.forward_blocks(&xs, 0, start_pos, cache)?;
        // [b, seq_len, hidden] → [b, 1, hidden]
        let xs = xs.narrow(1, last, 1)?.contiguous()?;
        self.head(&xs)?.squeeze(1)
    }

    /// Hidden states `[b, seq_len, hidden]` of `tokens` `[b, seq_len]`.
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let ids = tokens.flatten_all()?;
        let xs = match &self.token_embd {
            Some(e) => e.index_select(&ids, 0)?.to_dtype(self.act_dtype)?,
            None => self.lm_head.rows(&ids)?,
        };
        xs.reshape((b, t, self.cfg.hidden_size))
    }

    /// Runs blocks `from..` on hidden states `xs` `[b, seq_len, hidden]`. With the fused prefill
    /// ([`kernels::prefill_ops`]) each block's last residual add runs with the next block's first norm.
    pub fn forward_blocks(&self, xs: &Tensor, from: usize, start_pos: usize, cache: &mut Cache) -> Result<Tensor> {
        let mut xs = xs.clone();
        let Some(first) = self.blocks.get(from) else { return Ok(xs) };
        if !kernels::prefill_ops::enabled() {
            for n in from..self.blocks.len() {
                xs = self.forward_block(n, &xs, start_pos, cache)?;
            }
            return Ok(xs);
        }
        let eps = self.eps as f32;
        let mut ys = candle_nn::ops::rms_norm(&xs, &first.attn_norm, eps)?;
        for n in from..self.blocks.len() {
            let (h, mlp) = self.block_after_norm(n, &xs, &ys, start_pos, cache)?;
            match self.blocks.get(n + 1) {
                Some(next) => (xs, ys) = kernels::decode::add_rms_norm(&h, &mlp, &next.attn_norm, eps)?,
                None => xs = (h + mlp)?,
            }
        }
        Ok(xs)
    }

    /// Runs block `n` alone.
    pub fn forward_block(&self, n: usize, xs: &Tensor, start_pos: usize, cache: &mut Cache) -> Result<Tensor> {
        let Some(blk) = self.blocks.get(n) else {
            candle_core::bail!("block {n} of a model with {} blocks", self.blocks.len())
        };
        let ys = candle_nn::ops::rms_norm(xs, &blk.attn_norm, self.eps as f32)?;
        let (h, mlp) = self.block_after_norm(n, xs, &ys, start_pos, cache)?;
        h + mlp
    }

    /// Block `n` on `xs`, given `ys` = its attention norm of `xs`: `(xs + attention, mlp output)`,
    /// whose sum is the block's output.
    fn block_after_norm(
        &self,
        n: usize,
        xs: &Tensor,
        ys: &Tensor,
        start_pos: usize,
        cache: &mut Cache,
    ) -> Result<(Tensor, Tensor)> {
        if cache.kvs.len() != self.blocks.len() {
            cache.kvs = vec![None; self.blocks.len()];
        }
        let end = start_pos + xs.dim(1)?;
        if end > self.rope.max_pos() {
            candle_core::bail!("position {end} is past the model's context of {}", self.rope.max_pos());
        }
        let Some(blk) = self.blocks.get(n) else { candle_core::bail!("block {n} of {}", self.blocks.len()) };
        let eps = self.eps as f32;
        let attn = blk.attn.forward(ys, start_pos, &self.rope, &mut cache.kvs[n], !cache.scoring)?;
        let (h, ys) = if kernels::prefill_ops::enabled() {
            kernels::decode::add_rms_norm(xs, &attn, &blk.ffn_norm, eps)?
        } else {
            let h = (xs + attn)?;
            let ys = candle_nn::ops::rms_norm(&h, &blk.ffn_norm, eps)?;
            (h, ys)
        };
        Ok((h, blk.mlp.forward(&ys)?))
    }

    /// Final norm and LM head: hidden `[b, seq_len, hidden]` → f32 logits `[b, seq_len, vocab]`.
    pub fn head(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = candle_nn::ops::rms_norm(xs, &self.norm, self.eps as f32)?;
        self.lm_head.forward(&xs)?.to_dtype(DType::F32)
    }

    /// The architecture.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The compute device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The activations' (and KV cache's) dtype.
    pub fn act_dtype(&self) -> DType {
        self.act_dtype
    }

    /// Number of transformer blocks.
    pub fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks whose q/k/v a prompt multiplies as one stacked weight now (`MINILAB_STACK_QKV`).
    pub fn stacked_qkv(&self) -> usize {
        self.blocks.iter().filter(|b| b.attn.is_stacked()).count()
    }

    /// Every linear layer id, blocks in order then `output`.
    pub fn layer_ids(&self) -> Vec<LayerId> {
        let mut ids: Vec<LayerId> = (0..self.blocks.len())
            .flat_map(|b| LayerKind::BLOCK.into_iter().map(move |k| LayerId::block(b, k)))
            .collect();
        ids.push(LayerId::output());
        ids
    }

    /// The linear layer `id`.
    pub fn linear(&self, id: LayerId) -> Option<&SwitchableLinear> {
        let Some(b) = id.block else { return Some(&self.lm_head) };
        let blk = self.blocks.get(b)?;
        Some(match id.kind {
            LayerKind::AttnQ => &blk.attn.q_proj,
            LayerKind::AttnK => &blk.attn.k_proj,
            LayerKind::AttnV => &blk.attn.v_proj,
            LayerKind::AttnOutput => &blk.attn.o_proj,
            LayerKind::FfnGate => &blk.mlp.gate_proj,
            LayerKind::FfnUp => &blk.mlp.up_proj,
            LayerKind::FfnDown => &blk.mlp.down_proj,
            LayerKind::Output => &self.lm_head,
        })
    }

    /// The linear layer `id`, to change.
    pub fn linear_mut(&mut self, id: LayerId) -> Option<&mut SwitchableLinear> {
        let Some(b) = id.block else { return Some(&mut self.lm_head) };
        let blk = self.blocks.get_mut(b)?;
        Some(match id.kind {
            LayerKind::AttnQ => &mut blk.attn.q_proj,
            LayerKind::AttnK => &mut blk.attn.k_proj,
            LayerKind::AttnV => &mut blk.attn.v_proj,
            LayerKind::AttnOutput => &mut blk.attn.o_proj,
            LayerKind::FfnGate => &mut blk.mlp.gate_proj,
            LayerKind::FfnUp => &mut blk.mlp.up_proj,
            LayerKind::FfnDown => &mut blk.mlp.down_proj,
            LayerKind::Output => &mut self.lm_head,
        })
    }

    /// Re-encodes layer `id` in `precision` from its master (and stacks its block's q/k/v again
    /// when it is one of them).
    pub fn set_precision(&mut self, id: LayerId, precision: Precision) -> Result<()> {
        match self.linear_mut(id) {
            Some(l) => l.set_precision(precision)?,
            None => candle_core::bail!("no layer {id} in this model"),
        }
        match (id.block, id.kind) {
            (Some(b), LayerKind::AttnQ | LayerKind::AttnK | LayerKind::AttnV) => self.blocks[b].attn.restack(),
            _ => Ok(()),
        }
    }

    /// A digest of every weight (masters, norms, embedding), hashed in parallel: the model's
    /// identity in a scan journal.
    pub fn weights_digest(&self) -> Result<String> {
        use rayon::prelude::*;
        let ids = self.layer_ids();
        let mut tensors: Vec<&Tensor> = ids.iter().filter_map(|id| self.linear(*id)?.master()).collect();
        for b in &self.blocks {
            tensors.extend([&b.attn_norm, &b.ffn_norm]);
        }
        tensors.push(&self.norm);
        tensors.extend(self.token_embd.as_ref());
        let digests: Vec<[u8; 32]> =
            tensors.par_iter().map(|t| super::digest::tensor_digest(t)).collect::<Result<_>>()?;
        Ok(super::digest::combine(&digests))
    }

    /// Keeps the host encodings of every layer for reuse (see `SwitchableLinear::cache_encodings`).
    pub fn cache_encodings(&mut self) {
        for id in self.layer_ids() {
            if let Some(l) = self.linear_mut(id) {
                l.cache_encodings();
            }
        }
    }

    /// Drops every master: no more switching, honest memory.
    pub fn drop_masters(&mut self) {
        for id in self.layer_ids() {
            if let Some(l) = self.linear_mut(id) {
                l.drop_master();
            }
        }
    }

    /// Bytes of the resident weights under the current formats: linears as encoded, plus the
    /// embedding (16-bit, unless tied: then it is the LM head) and norms (16-bit).
    pub fn weight_bytes(&self) -> u64 {
        let linears: u64 = self.layer_ids().iter().filter_map(|id| self.linear(*id)).map(|l| l.weight_bytes()).sum();
        linears + self.fixed_bytes()
    }

    /// Bytes the model's tensors really occupy on the device now: encoded linears, the embedding
    /// in the weights' dtype and the norms in the activations'.
    pub fn resident_bytes(&self) -> u64 {
        let linears: u64 = self.layer_ids().iter().filter_map(|id| self.linear(*id)).map(|l| l.resident_bytes()).sum();
        let embd = self.token_embd.as_ref().map_or(0, |e| (e.elem_count() * self.dtype.size_in_bytes()) as u64);
        let h = self.cfg.hidden_size as u64;
        let norms = h * (2 * self.blocks.len() as u64 + 1) * self.act_dtype.size_in_bytes() as u64;
        linears + embd + norms
    }

    /// Bytes that no plan changes: the untied embedding and the norms, at 2 bytes per weight.
    pub fn fixed_bytes(&self) -> u64 {
        let h = self.cfg.hidden_size as u64;
        let embd = if self.token_embd.is_some() { self.cfg.vocab_size as u64 * h } else { 0 };
        2 * (embd + h * (2 * self.blocks.len() as u64 + 1))
    }
}
