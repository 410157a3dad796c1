//! The small ops of one decode step, fused: on the GPU the kernels of `cuda/decode.cu`, which read
//! the position from device memory so that a captured step replays at every position; elsewhere
//! the same results from candle's ops, the reference the kernels are checked against. The fused
//! prefill ([`super::prefill_ops`]) runs them over a whole prompt.

use super::op::enabled;
use candle_core::{DType, Result, Tensor};

#[cfg(feature = "cuda")]
use super::cuda::{attention as gpu_attention, decode as gpu};

/// Longest cache the fused decode step takes (the RoPE tables may set a lower limit): the longest
/// that the attention kernels were checked against on the GPU. The split kernels have no limit of
/// their own (the chunks grow with the cache); the one-block kernels keep the scores of the whole
/// cache in shared memory and stop here.
pub const MAX_CONTEXT: usize = 8192;

/// Whether the fused kernels run for `t`.
fn fused(t: &Tensor) -> bool {
    cfg!(feature = "cuda") && t.device().is_cuda() && enabled()
}

/// `(xs + ys, RMSNorm(xs + ys)·w)`: a residual add and the next norm, one launch on the GPU.
pub fn add_rms_norm(xs: &Tensor, ys: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    if fused(xs) && xs.elem_count() / w.elem_count().max(1) <= u32::MAX as usize {
        return gpu::add_rms_norm(xs, ys, w, eps);
    }
    let res = (xs + ys)?;
    let out = candle_nn::ops::rms_norm(&res, w, eps)?;
    Ok((res, out))
}

/// `silu(gate)·up`, one launch on the GPU.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if fused(gate) && gate.elem_count() <= i32::MAX as usize {
        return gpu::silu_mul(gate, up);
    }
    candle_nn::ops::silu(gate)? * up
}

/// The position a step's `pos` (`[1]` u32) holds, read back to the host (the reference path).
pub fn host_pos(pos: &Tensor) -> Result<usize> {
    Ok(pos.flatten_all()?.to_vec1::<u32>()?.first().copied().unwrap_or(0) as usize)
}

/// RoPE on q `[b, t, heads·d]` and k `[b, t, kv_heads·d]` at positions `*pos..*pos + t`; writes k
/// and v into the caches `[b, kv_heads, cap, d]` (whose shape gives `kv_heads` and `d`) there and
/// returns q `[b, heads, t, d]`. A decode step has t = 1; a prefill rotates and stores its whole
/// prompt in this one pass. `cos`, `sin`: the tables `[max_pos, d/2]`; the caller keeps
/// `*pos + t` within both `cap` and `max_pos`.
pub fn rope_kv(
    heads: usize,
    [q, k, v]: [&Tensor; 3],
    [cos, sin]: [&Tensor; 2],
    pos: &Tensor,
    [k_cache, v_cache]: [&Tensor; 2],
) -> Result<Tensor> {
    let (b, kv_heads, cap, d) = k_cache.dims4()?;
    let (_, t, _) = q.dims3()?;
    #[cfg(feature = "cuda")]
    if fused(q) {
        let s = gpu::RopeKv { b, t, heads, kv_heads, cap, d };
        return gpu::rope_kv(&s, [q, k, v], [cos, sin], pos, [k_cache, v_cache]);
    }
    let p = host_pos(pos)?;
    if p + t > cap {
        candle_core::bail!("rope_kv: positions {p}..{} are past the cache's {cap}", p + t);
    }
    // (b, t, n·d) → (b, n, t, d)
    let split = |x: &Tensor, n: usize| x.reshape((b, t, n, d))?.transpose(1, 2)?.contiguous();
    let (c, s) = (cos.narrow(0, p, t)?, sin.narrow(0, p, t)?);
    let q = candle_nn::rotary_emb::rope(&split(q, heads)?, &c, &s)?;
    let k = candle_nn::rotary_emb::rope(&split(k, kv_heads)?, &c, &s)?;
    k_cache.slice_set(&k, 2, p)?;
    v_cache.slice_set(&split(v, kv_heads)?, 2, p)?;
    Ok(q)
}

/// Decode attention over the first `*pos + 1` positions of the caches: q `[b, heads, 1, d]`, k, v
/// `[b, kv_heads, cap, d]` → `[b, heads, 1, d]`, in one launch (a short cache) or two (a long
/// one, split into chunks). `None` off the GPU, past [`MAX_CONTEXT`], or for a long cache with
/// more than eight query heads a kv head: the caller then takes the tensor-op path.
pub fn attention_decode(q: &Tensor, k: &Tensor, v: &Tensor, pos: &Tensor, scale: f32) -> Result<Option<Tensor>> {
    let (b, heads, t, d) = q.dims4()?;
    let (kb, kv_heads, cap, kd) = k.dims4()?;
    if !fused(q)
        || t != 1
        || (kb, kd) != (b, d)
        || v.dims() != k.dims()
        || cap > MAX_CONTEXT
        || kv_heads == 0
        || heads % kv_heads != 0
        || !d.is_multiple_of(8)
        || d > 256
        || pos.dtype() != DType::U32
    {
        return Ok(None);
    }
    #[cfg(feature = "cuda")]
    {
        let op = super::params::AttnDecode { heads, kv_heads, cap, d, scale };
        if !gpu_attention::attention_fits(&op) {
            return Ok(None);
        }
        gpu_attention::attention(&op, &q.contiguous()?, k, v, pos).map(Some)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (v, scale);
        Ok(None)
    }
}

/// For rope_kv's GPU kernel: the elements from one token's row to the next of `x` `[b, t, n]` when
/// its rows are each contiguous and evenly spaced (a contiguous tensor, or a column range of a wider
/// one, as a stacked q/k/v product's outputs are): `None` else.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))] // the GPU kernel's rule, tested on every build
pub(crate) fn row_stride(x: &Tensor) -> Option<usize> {
    let (b, t, n) = x.dims3().ok()?;
    let st = x.stride();
    // token j of sequence s is row s·t + j; a dimension of one has no stride of its own to keep
    let ld = match (b > 1, t > 1) {
        (_, true) => st[1],
        (true, false) => st[0],
        (false, false) => n,
    };
    let rows_even = b <= 1 || t <= 1 || st[0] == t * ld;
    (ld >= n && rows_even && (st[2] == 1 || n <= 1)).then_some(ld)
}

#[cfg(test)]
mod tests {
    use super::row_stride;
    use candle_core::{Device, Tensor};

    #[test]
    fn row_stride_takes_column_ranges_and_refuses_other_views() -> candle_core::Result<()> {
        // (b, t, 5 + 2 + 2): a stacked q/k/v product's output
        let ys = Tensor::zeros((2, 3, 9), candle_core::DType::F32, &Device::Cpu)?;
        assert_eq!(row_stride(&ys), Some(9));
        assert_eq!(row_stride(&ys.narrow(2, 5, 2)?), Some(9));
        // one token a sequence: the batch stride is the row stride
        assert_eq!(row_stride(&ys.narrow(1, 2, 1)?.narrow(2, 0, 5)?), Some(27));
        assert_eq!(row_stride(&ys.narrow(0, 1, 1)?.narrow(1, 0, 1)?), Some(9));
        // rows of a sequence not evenly spaced from the last sequence's, or columns not contiguous
        assert_eq!(row_stride(&ys.narrow(1, 0, 2)?), None);
        assert_eq!(row_stride(&ys.transpose(1, 2)?.narrow(2, 0, 2)?), None);
        assert_eq!(row_stride(&ys.flatten_all()?), None);
        Ok(())
    }
}
