//! Decode attention (one new token) over a preallocated KV cache as a single CUDA kernel.

use super::op::enabled;
use super::params::AttnDecode;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// Longest context the fused kernel takes: its scores live in shared memory (4 bytes a position).
pub const MAX_CONTEXT: usize = 8192;

/// `softmax(q·kᵀ·scale)·v` for one new token per sequence: `q` `[b, heads, 1, d]`, `k`, `v`
/// `[b, kv_heads, cap, d]` of which the first `total` positions are filled → `[b, heads, 1, d]`.
/// `None` where the kernel does not apply (not CUDA, kernels off, context too long): the caller then
/// takes the tensor-op path.
pub fn attention_decode(q: &Tensor, k: &Tensor, v: &Tensor, total: usize, scale: f32) -> Result<Option<Tensor>> {
    if !q.device().is_cuda() || !enabled() || total == 0 || total > MAX_CONTEXT {
        return Ok(None);
    }
    let (_b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, cap, _) = k.dims4()?;
    if t != 1 || heads % kv_heads != 0 || total > cap {
        return Ok(None);
    }
    let op = AttnDecode { heads, kv_heads, cap, total, d, scale };
    q.contiguous()?.apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op).map(Some)
}

impl CustomOp3 for AttnDecode {
    fn name(&self) -> &'static str {
        "minilab-attention-decode"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("minilab-attention-decode runs on CUDA only")
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        q: &candle_core::CudaStorage,
        lq: &Layout,
        k: &candle_core::CudaStorage,
        lk: &Layout,
        v: &candle_core::CudaStorage,
        lv: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let out = super::cuda::attn_decode(self, (q, lq), (k, lk), (v, lv))?;
        Ok((out, lq.shape().clone()))
    }
}
