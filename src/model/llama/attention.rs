//! Grouped-query attention over a prompt (or an eager decode step): the plain path by candle's
//! ops, and the fused one (the default, [`kernels::prefill_ops`]) that rotates q and k,
//! lays q out by head and writes k and v into the cache in one pass.

use super::cache::Kv;
use crate::kernels;
use crate::model::rope::Rope;
use crate::quant::{stacked, Stacked, SwitchableLinear};
use candle_core::{Module, Result, Tensor};

#[derive(Debug, Clone)]
pub(super) struct Attention {
    pub(super) q_proj: SwitchableLinear,
    pub(super) k_proj: SwitchableLinear,
    pub(super) v_proj: SwitchableLinear,
    pub(super) o_proj: SwitchableLinear,
    pub(super) n_heads: usize,
    pub(super) n_kv_heads: usize,
    pub(super) head_dim: usize,
    /// q/k/v in one buffer while they share a format ([`Self::restack`]): one GEMM a prompt.
    pub(super) qkv: Option<Stacked>,
}

/// Where a call's tokens go: their first position, the RoPE tables, and whether k and v are kept in
/// the cache (else the call attends over its own keys alone, scoring).
#[derive(Clone, Copy)]
struct At<'a> {
    start_pos: usize,
    rope: &'a Rope,
    keep: bool,
}

impl Attention {
    /// `xs` `[b, t, hidden]` at positions `start_pos..` → `[b, t, hidden]`; appends k and v to `kv`
    /// when `keep`, else attends over this call's own keys alone (scoring).
    pub(super) fn forward(
        &self,
        xs: &Tensor,
        start_pos: usize,
        rope: &Rope,
        kv: &mut Option<Kv>,
        keep: bool,
    ) -> Result<Tensor> {
        let layers = self.qkv_layers();
        let stacked = match &self.qkv {
            Some(s) => s.forward(&layers, xs)?,
            None => None,
        };
        let qkv = match stacked {
            Some(ys) => ys,
            None => SwitchableLinear::forward_many(&layers, xs)?,
        };
        let [q, k, v]: [Tensor; 3] =
            qkv.try_into().map_err(|_| candle_core::Error::Msg("attention: q/k/v projections".into()))?;
        let len = kv.as_ref().map_or(0, |kv| kv.len);
        let at = At { start_pos, rope, keep };
        let ys = if kernels::prefill_ops::enabled() && (if keep { len == start_pos } else { start_pos == 0 }) {
            self.attend_fused([&q, &k, &v], &at, kv)?
        } else {
            self.attend_plain([q, k, v], &at, kv)?
        };
        self.o_proj.forward(&ys)
    }

    /// q, k and v, in the order a stack holds them.
    pub(super) fn qkv_layers(&self) -> [&SwitchableLinear; 3] {
        [&self.q_proj, &self.k_proj, &self.v_proj]
    }

    /// Whether a prompt's q/k/v run as one stacked product now: a stack holds their encodings.
    pub(super) fn is_stacked(&self) -> bool {
        self.qkv.as_ref().is_some_and(|s| s.holds(&self.qkv_layers()))
    }

    /// Stacks q/k/v again after one of them switched, where [`stacked::stacks_on`] their device and
    /// they share a format (a switch to the format a layer had keeps the stack); else gives them
    /// weights of their own back, so that no stale stack stays alive.
    pub(super) fn restack(&mut self) -> Result<()> {
        if stacked::stacks_on(self.q_proj.device()) {
            if self.is_stacked() {
                return Ok(());
            }
            // the old stack's buffer goes once every layer views the new one
            let mut layers = [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj];
            if let Some(s) = Stacked::build(&mut layers)? {
                self.qkv = Some(s);
                return Ok(());
            }
        }
        match self.qkv.take() {
            Some(old) => old.release(&mut [&mut self.q_proj, &mut self.k_proj, &mut self.v_proj]),
            None => Ok(()),
        }
    }

    /// q, k, v `[b, t, n·head_dim]` → `[b, t, heads·head_dim]` by candle's ops.
    fn attend_plain(&self, [q, k, v]: [Tensor; 3], at: &At<'_>, kv: &mut Option<Kv>) -> Result<Tensor> {
        let At { start_pos, rope, keep } = *at;
        let (b, t, _) = q.dims3()?;
        // (b, t, n·head_dim) → (b, n, t, head_dim)
        let heads = |x: Tensor, n: usize| x.reshape((b, t, n, self.head_dim))?.transpose(1, 2);
        let q = rope.apply(&heads(q, self.n_heads)?, start_pos)?;
        let k = rope.apply(&heads(k, self.n_kv_heads)?, start_pos)?;
        let v = heads(v, self.n_kv_heads)?.contiguous()?;
        let (k, v) = if keep {
            // The GPU's buffers grow by doubling, so that decode steps (decode.rs) write in place.
            Kv::append(kv, k, v, q.device().is_cuda())?;
            let Some(kv) = kv.as_ref() else { candle_core::bail!("attention: empty KV cache") };
            kv.filled()?
        } else {
            (k.contiguous()?, v)
        };
        self.attend(&q, &k, &v, start_pos)
    }

    /// [`Self::attend_plain`] with RoPE, q's layout by head and the cache writes in one pass
    /// ([`kernels::decode::rope_kv`]) into buffers: the cache's, grown by doubling as decode steps
    /// need, which must hold exactly `start_pos` positions; or, when scoring from position 0, a
    /// call's own of exactly `t`.
    fn attend_fused(&self, [q, k, v]: [&Tensor; 3], at: &At<'_>, kv: &mut Option<Kv>) -> Result<Tensor> {
        let At { start_pos, rope, keep } = *at;
        let (b, t, _) = q.dims3()?;
        let mut own;
        let slot = if keep {
            Kv::reserve(kv, (b, self.n_kv_heads, self.head_dim), start_pos + t, q.dtype(), q.device())?;
            kv
        } else {
            let buf = || Tensor::zeros((b, self.n_kv_heads, t, self.head_dim), q.dtype(), q.device());
            own = Some(Kv { k: buf()?, v: buf()?, len: 0 });
            &mut own
        };
        let Some(buf) = slot.as_mut() else { candle_core::bail!("attention: no KV buffers") };
        // q: (b, heads, t, head_dim); a stacked product's q/k/v are read in place, not copied
        let q = kernels::decode::rope_kv(
            self.n_heads,
            [q, k, v],
            rope.tables(),
            &rope.position(start_pos)?,
            [&buf.k, &buf.v],
        )?;
        buf.len = start_pos + t;
        // a prompt's rows (a decode step keeps its own kernels): flash.cu reads the buffers in place
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        if t > 1 {
            if let Some(ys) = kernels::flash::causal_attention(&q, &buf.k, &buf.v, start_pos, scale)? {
                return Ok(ys);
            }
        }
        let (k, v) = buf.filled()?;
        kernels::prefill_ops::heads_to_rows(&self.attend_heads(&q, &k, &v, start_pos)?)
    }

    /// [`Self::attend_heads`] laid out by token: `[b, t, heads·d]`.
    pub(super) fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, start_pos: usize) -> Result<Tensor> {
        let (b, _, t, _) = q.dims4()?;
        // (b, heads, t, head_dim) → (b, t, hidden)
        let ys = self.attend_heads(q, k, v, start_pos)?;
        ys.transpose(1, 2)?.reshape((b, t, self.n_heads * self.head_dim))
    }

    /// `softmax(q·kᵀ/√d + mask)·v` (the softmax one kernel on the GPU): q `[b, heads, t, d]` at
    /// positions `start_pos..`, k, v `[b, kv_heads, total, d]` → `[b, heads, t, d]`.
    fn attend_heads(&self, q: &Tensor, k: &Tensor, v: &Tensor, start_pos: usize) -> Result<Tensor> {
        let (b, _, t, _) = q.dims4()?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let group = self.n_heads / self.n_kv_heads;
        // Grouped-query attention without copying K/V: fold the query heads of a group into rows.
        // q: (b, kv_heads, group·t, head_dim); k, v: (b, kv_heads, total, head_dim)
        let q = q.reshape((b, self.n_kv_heads, group * t, self.head_dim))?;
        // (b, kv_heads, group·t, total); row g·t + i is query i of the group's head g
        let att = kernels::softmax::causal_softmax(&q.matmul(&k.t()?)?, scale, t, start_pos)?;
        // (b, kv_heads, group·t, head_dim) → (b, heads, t, head_dim)
        att.matmul(v)?.reshape((b, self.n_heads, t, self.head_dim))
    }
}
