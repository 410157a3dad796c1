//! One decode step, fused for the GPU: seven launches a block (q/k/v in one GEMV that also applies
//! RoPE and appends k and v, the attention, o_proj, the residual add with the next norm, gate/up with
//! silu·up, down_proj, and the second add and norm), or five where the norms fold into the launches
//! after them and the adds into those before ([`kernels::fold_norms`]). The position is read from
//! device memory, so that the same step can be captured once as a CUDA graph
//! ([`crate::model::graph`]) and replayed for every token.

use super::cache::Kv;
use super::{Attention, Cache, Mlp, Model};
use crate::kernels::{self, MAX_CONTEXT};
use crate::quant::SwitchableLinear;
use candle_core::{DType, Module, Result, Tensor};

impl Model {
    /// Whether [`Model::forward`] takes the decode step: one new token per sequence on the GPU with
    /// the kernels on, appended at the end of a cache that keeps keys and values.
    pub(super) fn takes_decode_step(&self, tokens: &Tensor, start_pos: usize, cache: &Cache) -> Result<bool> {
        let (_, t) = tokens.dims2()?;
        let fits = start_pos < self.decode_limit();
        Ok(t == 1
            && fits
            && self.device.is_cuda()
            && kernels::enabled()
            && !cache.scoring
            && start_pos == cache.seq_len())
    }

    /// Positions the fused decode step serves: the attention kernel's and the RoPE tables' limit.
    pub fn decode_limit(&self) -> usize {
        MAX_CONTEXT.min(self.rope.max_pos())
    }

    /// [`Model::decode_step`] at `start_pos`, the cache grown to hold it and advanced past it.
    pub(super) fn decode(&self, tokens: &Tensor, start_pos: usize, cache: &mut Cache) -> Result<Tensor> {
        let (b, _) = tokens.dims2()?;
        self.reserve_cache(cache, b, start_pos + 1)?;
        let pos = Tensor::new(&[start_pos as u32], &self.device)?;
        let logits = self.decode_step(tokens, &pos, cache)?;
        cache.advance(1);
        Ok(logits)
    }

    /// Grows every block's key/value buffers for `batch` sequences to hold `need` positions (by
    /// doubling from 256), keeping what they hold.
    pub fn reserve_cache(&self, cache: &mut Cache, batch: usize, need: usize) -> Result<()> {
        if cache.scoring {
            candle_core::bail!("a scoring cache keeps no keys and values");
        }
        if cache.kvs.len() != self.blocks.len() {
            cache.kvs = vec![None; self.blocks.len()];
        }
        let shape = (batch, self.cfg.num_key_value_heads, self.cfg.head_dim);
        for kv in cache.kvs.iter_mut() {
            Kv::reserve(kv, shape, need, self.act_dtype, &self.device)?;
        }
        Ok(())
    }

    /// f32 logits `[b, 1, vocab]` of one new token per sequence, `tokens` `[b, 1]` (u32), all at the
    /// position `pos` holds (`[1]` u32 on the model's device). Writes the keys and values at that
    /// position into `cache`, whose buffers must hold it ([`Model::reserve_cache`]), and leaves its
    /// length alone: the caller advances it ([`Cache::advance`]). Nothing here reads the position on
    /// the host when the kernels run, so the step can be captured as a graph.
    pub fn decode_step(&self, tokens: &Tensor, pos: &Tensor, cache: &Cache) -> Result<Tensor> {
        if cache.kvs.len() != self.blocks.len() || cache.kvs.iter().any(|kv| kv.is_none()) {
            candle_core::bail!("decode step: the cache has no buffers (reserve it first)");
        }
        if self.folds_norms(tokens.dim(0)?) {
            return self.decode_step_folded(tokens, pos, cache);
        }
        let eps = self.eps as f32;
        let Some(first) = self.blocks.first() else { candle_core::bail!("decode step: a model without blocks") };
        let mut res = self.embed(tokens)?;
        let mut ys = candle_nn::ops::rms_norm(&res, &first.attn_norm, eps)?;
        for (n, (blk, kv)) in self.blocks.iter().zip(cache.kvs.iter().flatten()).enumerate() {
            let next = self.next_launches(n);
            let attn = blk.attn.decode(&ys, &DecodeAt { pos, rope: &self.rope, kv }, &next)?;
            let (r, y) = kernels::decode::add_rms_norm(&res, &attn, &blk.ffn_norm, eps)?;
            let mlp = blk.mlp.decode(&y, &next)?;
            // The residual add, then the next block's attention norm (the final norm after the last).
            let norm = self.blocks.get(n + 1).map_or(&self.norm, |b| &b.attn_norm);
            (res, ys) = kernels::decode::add_rms_norm(&r, &mlp, norm, eps)?;
        }
        let _pf = SwitchableLinear::prefetch(&first.attn.qkv())?;
        self.lm_head.forward(&ys)?.to_dtype(DType::F32)
    }

    /// What the launch after each GEMV launch of block `n` reads, for [`SwitchableLinear::prefetch`]:
    /// o_proj after q/k/v, gate/up after o_proj, down_proj after gate/up, and after down_proj the next
    /// block's q/k/v or the head.
    fn next_launches(&self, n: usize) -> NextLaunches<'_> {
        let blk = &self.blocks[n];
        NextLaunches {
            after_qkv: vec![&blk.attn.o_proj],
            after_o: vec![&blk.mlp.gate_proj, &blk.mlp.up_proj],
            after_gate_up: vec![&blk.mlp.down_proj],
            after_down: self.blocks.get(n + 1).map_or_else(|| vec![&self.lm_head], |b| b.attn.qkv().to_vec()),
        }
    }

    /// Whether a decode step of `rows` sequences folds its norms and residual adds into the GEMV
    /// launches beside them ([`kernels::fold_norms`]).
    pub fn folds_norms(&self, rows: usize) -> bool {
        kernels::fold_norms(&self.device, self.act_dtype, rows)
    }

    /// [`Self::decode_step`] with each norm folded into the launch after it and each residual add
    /// into the launch before it ([`kernels::fold_norms`]): five launches a block on the GPU where
    /// the kernels take them, the residual launches also handing the next norm its statistics under
    /// the stats way ([`kernels::NormFold`]); elsewhere candle's ops in their place, the same
    /// arithmetic.
    fn decode_step_folded(&self, tokens: &Tensor, pos: &Tensor, cache: &Cache) -> Result<Tensor> {
        let eps = self.eps as f32;
        let mut res = self.embed(tokens)?;
        // the statistics of the norm before the next q/k/v launch (none before the first block's)
        let mut stats = None;
        for (n, (blk, kv)) in self.blocks.iter().zip(cache.kvs.iter().flatten()).enumerate() {
            let next = self.next_launches(n);
            let norm = kernels::NormRef { weight: &blk.attn_norm, eps, stats: stats.as_ref() };
            let ys = {
                let _pf = SwitchableLinear::prefetch(&next.after_qkv)?;
                blk.attn.attend_decode(&res, Some(norm), &DecodeAt { pos, rope: &self.rope, kv })?
            };
            (res, stats) = {
                let _pf = SwitchableLinear::prefetch(&next.after_o)?;
                blk.attn.o_proj.forward_residual_stats(&ys, &res, kernels::NormRef::new(&blk.ffn_norm, eps))?
            };
            let norm = kernels::NormRef { weight: &blk.ffn_norm, eps, stats: stats.as_ref() };
            let act = {
                let _pf = SwitchableLinear::prefetch(&next.after_gate_up)?;
                SwitchableLinear::forward_silu_mul(&blk.mlp.gate_proj, &blk.mlp.up_proj, &res, Some(norm))?
            };
            let _pf = SwitchableLinear::prefetch(&next.after_down)?;
            (res, stats) = match self.blocks.get(n + 1) {
                Some(b) => {
                    blk.mlp.down_proj.forward_residual_stats(&act, &res, kernels::NormRef::new(&b.attn_norm, eps))?
                }
                // the final norm goes to candle's op below
                None => (blk.mlp.down_proj.forward_residual(&act, &res)?, None),
            };
        }
        let ys = candle_nn::ops::rms_norm(&res, &self.norm, eps)?;
        let _pf = match self.blocks.first() {
            Some(first) => Some(SwitchableLinear::prefetch(&first.attn.qkv())?),
            None => None,
        };
        self.lm_head.forward(&ys)?.to_dtype(DType::F32)
    }
}

/// The layers that the launch after each GEMV launch of a block reads ([`Model::next_launches`]).
struct NextLaunches<'a> {
    after_qkv: Vec<&'a SwitchableLinear>,
    after_o: Vec<&'a SwitchableLinear>,
    after_gate_up: Vec<&'a SwitchableLinear>,
    after_down: Vec<&'a SwitchableLinear>,
}

/// Where a block's decode attention works: the position (`[1]` u32 on the device), the RoPE tables
/// and the block's cache buffers.
struct DecodeAt<'a> {
    pos: &'a Tensor,
    rope: &'a super::Rope,
    kv: &'a Kv,
}

impl Attention {
    /// Attention of one new token `xs` `[b, 1, hidden]` at `*at.pos`, its keys and values written
    /// into `at.kv`'s buffers → `[b, 1, hidden]`.
    fn decode(&self, xs: &Tensor, at: &DecodeAt<'_>, next: &NextLaunches<'_>) -> Result<Tensor> {
        let ys = {
            let _pf = SwitchableLinear::prefetch(&next.after_qkv)?;
            self.attend_decode(xs, None, at)?
        };
        let _pf = SwitchableLinear::prefetch(&next.after_o)?;
        self.o_proj.forward(&ys)
    }

    /// q, k and v, the layers of the step's first launch in a block.
    fn qkv(&self) -> [&SwitchableLinear; 3] {
        [&self.q_proj, &self.k_proj, &self.v_proj]
    }

    /// q with RoPE at `*pos`, k and v written into `kv`'s buffers: one launch where the fused
    /// kernels take it (with `norm`, of RMSNorm(xs)·weight) → q `[b, heads, 1, head_dim]`.
    fn qkv_decode(&self, xs: &Tensor, norm: Option<kernels::NormRef<'_>>, at: &DecodeAt<'_>) -> Result<Tensor> {
        let DecodeAt { pos, rope, kv } = *at;
        let layers = self.qkv();
        let refs = kernels::RopeKvRefs { heads: self.n_heads, tables: rope.tables(), pos, caches: [&kv.k, &kv.v] };
        if let Some(q) = SwitchableLinear::forward_qkv_rope(layers, xs, refs, norm)? {
            return Ok(q);
        }
        if let Some(n) = norm {
            let xs = candle_nn::ops::rms_norm(xs, n.weight, n.eps)?;
            return self.qkv_decode(&xs, None, at);
        }
        let [q, k, v]: [Tensor; 3] = SwitchableLinear::forward_many(&layers, xs)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("attention: q/k/v projections".into()))?;
        kernels::decode::rope_kv(self.n_heads, [&q, &k, &v], rope.tables(), pos, [&kv.k, &kv.v])
    }

    /// The attention of one new token before o_proj → `[b, 1, heads·head_dim]` (with `norm`, of
    /// RMSNorm(xs)·weight).
    fn attend_decode(&self, xs: &Tensor, norm: Option<kernels::NormRef<'_>>, at: &DecodeAt<'_>) -> Result<Tensor> {
        let DecodeAt { pos, kv, .. } = *at;
        let b = xs.dim(0)?;
        // q: (b, heads, 1, head_dim)
        let q = self.qkv_decode(xs, norm, at)?;
        let scale = 1.0 / (self.head_dim as f32).sqrt();
        match kernels::decode::attention_decode(&q, &kv.k, &kv.v, pos, scale)? {
            // (b, heads, 1, head_dim) → (b, 1, hidden)
            Some(ys) => ys.reshape((b, 1, self.n_heads * self.head_dim)),
            None => {
                let total = kernels::decode::host_pos(pos)? + 1;
                let (k, v) = (kv.k.narrow(2, 0, total)?.contiguous()?, kv.v.narrow(2, 0, total)?.contiguous()?);
                self.attend(&q, &k, &v, total - 1)
            }
        }
    }
}

impl Mlp {
    /// The MLP of one new token `xs` `[b, 1, hidden]`.
    fn decode(&self, xs: &Tensor, next: &NextLaunches<'_>) -> Result<Tensor> {
        let act = {
            let _pf = SwitchableLinear::prefetch(&next.after_gate_up)?;
            SwitchableLinear::forward_silu_mul(&self.gate_proj, &self.up_proj, xs, None)?
        };
        let _pf = SwitchableLinear::prefetch(&next.after_down)?;
        self.down_proj.forward(&act)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::SyntheticSource;
    use crate::model::LlamaConfig;
    use candle_core::Device;

    fn tiny() -> Model {
        let cfg = LlamaConfig::preset("tiny").expect("tiny preset");
        Model::load(cfg, &mut SyntheticSource::new(7), &Device::Cpu, DType::F32).expect("tiny model")
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()).expect("diff")
    }

    /// The decode step (fixed buffers, position from a tensor, fused norms) gives the plain forward's
    /// logits, across a cache that a prompt filled by concatenation and that then grew.
    #[test]
    fn decode_step_matches_forward() -> Result<()> {
        let model = tiny();
        let dev = Device::Cpu;
        let prompt = Tensor::new(&[[3u32, 7, 1, 9, 4]], &dev)?;
        let (mut plain, mut fused) = (Cache::new(model.n_blocks()), Cache::new(model.n_blocks()));
        model.forward(&prompt, 0, &mut plain)?;
        model.forward(&prompt, 0, &mut fused)?;
        model.reserve_cache(&mut fused, 1, 6)?;
        assert_eq!((fused.seq_len(), fused.capacity()), (5, 256));
        for (i, tok) in [5u32, 2, 8, 0].into_iter().enumerate() {
            let ids = Tensor::new(&[[tok]], &dev)?;
            let want = model.forward(&ids, 5 + i, &mut plain)?;
            let got = model.decode_step(&ids, &Tensor::new(&[(5 + i) as u32], &dev)?, &fused)?;
            fused.advance(1);
            assert_eq!(got.dims(), want.dims());
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "step {i}: logits differ by {d}");
        }
        assert_eq!(fused.seq_len(), 9);
        Ok(())
    }

    /// With the norms and residual adds moved next to the launches (the GPU's opt-in layout), a step
    /// computes what the plain step does: on the CPU both are candle's ops in the same order.
    #[test]
    fn folded_step_matches_decode_step() -> Result<()> {
        let model = tiny();
        let dev = Device::Cpu;
        let prompt = Tensor::new(&[[3u32, 7, 1]], &dev)?;
        let (mut plain, mut folded) = (Cache::new(model.n_blocks()), Cache::new(model.n_blocks()));
        for cache in [&mut plain, &mut folded] {
            model.forward(&prompt, 0, cache)?;
            model.reserve_cache(cache, 1, 4)?;
        }
        for (i, tok) in [5u32, 2, 8].into_iter().enumerate() {
            let ids = Tensor::new(&[[tok]], &dev)?;
            let pos = Tensor::new(&[(3 + i) as u32], &dev)?;
            let want = model.decode_step(&ids, &pos, &plain)?;
            let got = model.decode_step_folded(&ids, &pos, &folded)?;
            plain.advance(1);
            folded.advance(1);
            assert_eq!(got.dims(), want.dims());
            let d = max_diff(&got, &want);
            assert!(d == 0.0, "step {i}: logits differ by {d}");
        }
        Ok(())
    }

    /// The time-to-first-token forward gives the full forward's last row (to rounding), leaves the cache as long,
    /// and refuses an empty prompt instead of reaching for position -1.
    #[test]
    fn forward_last_is_the_forwards_last_row() -> Result<()> {
        let model = tiny();
        let dev = Device::Cpu;
        let prompt = Tensor::new(&[[3u32, 7, 1, 9, 4], [2, 2, 8, 0, 6]], &dev)?;
        let (mut all, mut last) = (Cache::new(model.n_blocks()), Cache::new(model.n_blocks()));
        let want = model.forward(&prompt, 0, &mut all)?.narrow(1, 4, 1)?.squeeze(1)?;
        let got = model.forward_last(&prompt, 0, &mut last)?;
        assert_eq!(got.dims(), &[2, model.config().vocab_size]);
        // the head's matmul over one row may round apart from the same row among five
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "last row differs by {d}");
        assert_eq!(last.seq_len(), all.seq_len());
        let next = Tensor::new(&[[5u32], [1]], &dev)?;
        let want = model.forward(&next, 5, &mut all)?.squeeze(1)?;
        let d = max_diff(&model.forward_last(&next, 5, &mut last)?, &want);
        assert!(d < 1e-5, "next token differs by {d}");
        let empty = Tensor::zeros((1, 0), DType::U32, &dev)?;
        assert!(model.forward_last(&empty, 0, &mut Cache::new(model.n_blocks())).is_err());
        Ok(())
    }

    /// A step needs buffers, and a scoring cache has none to give.
    #[test]
    fn decode_step_refuses_caches_without_buffers() -> Result<()> {
        let model = tiny();
        let dev = Device::Cpu;
        let ids = Tensor::new(&[[1u32]], &dev)?;
        let pos = Tensor::new(&[0u32], &dev)?;
        assert!(model.decode_step(&ids, &pos, &Cache::new(model.n_blocks())).is_err());
        assert!(model.reserve_cache(&mut Cache::scoring(), 1, 8).is_err());
        let mut cache = Cache::new(model.n_blocks());
        model.reserve_cache(&mut cache, 1, 8)?;
        // Position 256 is past the buffers: refused, not written out of bounds.
        assert!(model.decode_step(&ids, &Tensor::new(&[256u32], &dev)?, &cache).is_err());
        Ok(())
    }
}
