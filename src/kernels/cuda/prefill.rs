//! CUDA launches of attention.cu's prefill kernels: the causal softmax and the move of the
//! attention's output from a head's rows to a token's row.

use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{Result, Tensor};

use super::attention::ATTENTION;
use super::decode::{aligned, by_dtype, cuda_device, dptr, output, WIDE_BYTES};
use super::launch::function;
use super::suffix;

/// Softmax of `scale · scores` over the last dim with the causal mask, for `scores`
/// `[…, rows, total]` whose row r is query `r % t` at position `start + r % t` (attention.cu's
/// causal_softmax).
pub(crate) fn causal_softmax(scores: &Tensor, scale: f32, t: usize, start: usize) -> Result<Tensor> {
    fn run<T: CudaDType + DeviceRepr>(scores: &Tensor, scale: f32, t: usize, start: usize) -> Result<Tensor> {
        let dev = cuda_device(scores)?;
        let stream = dev.cuda_stream();
        let total = scores.dim(candle_core::D::Minus1)?;
        let rows = scores.elem_count() / total;
        let (out, p_out) = output::<T>(dev, scores.shape())?;
        let (st, l) = scores.storage_and_layout();
        let mut syncs = Vec::new();
        let p_in = dptr::<T>(&st, l, &stream, &mut syncs)?;
        // 16-byte accesses where every row starts aligned (attention.cu's causal_softmax_wide)
        let wide = crate::kernels::prefill_ops::wide()
            && total.is_multiple_of(WIDE_BYTES / std::mem::size_of::<T>())
            && aligned(&[p_in]);
        let kernel = match (wide, regs_per_lane::<T>(total)) {
            (true, Some(k)) => format!("causal_softmax_regs{k}"),
            (true, None) => "causal_softmax_wide".to_string(),
            (false, _) => "causal_softmax".to_string(),
        };
        let func = function(dev, &ATTENTION, &format!("{kernel}_{}", suffix(scores.dtype())?))?;
        const WARPS: usize = 8;
        let cfg = LaunchConfig {
            grid_dim: (rows.div_ceil(WARPS) as u32, 1, 1),
            block_dim: (32 * WARPS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let (r, n, ti, si) = (rows as i64, total as i32, t as i32, start as i32);
        let mut b = stream.launch_builder(&func);
        b.arg(&p_in).arg(&p_out).arg(&r).arg(&n).arg(&ti).arg(&si).arg(&scale);
        // SAFETY: the arguments match causal_softmax's; both buffers hold rows · total elements.
        unsafe { b.launch(cfg) }.w()?;
        drop(syncs);
        Ok(out)
    }
    by_dtype!(scores.dtype(), run(scores, scale, t, start))
}

/// The 16-byte vectors a lane of causal_softmax_regs holds for rows of `total` elements of T (the
/// instantiated 2, 4 or 8; a warp a row), or `None`: the register-held softmax is off, or the row is
/// too long for it.
fn regs_per_lane<T>(total: usize) -> Option<usize> {
    let per_warp = 32 * WIDE_BYTES / std::mem::size_of::<T>();
    let k = total.div_ceil(per_warp).next_power_of_two().max(2);
    (crate::kernels::prefill_ops::softmax_regs() && k <= 8).then_some(k)
}

/// `ys` `[b, heads, t, d]` (contiguous) as `[b, t, heads·d]`, 16 bytes a thread (attention.cu's
/// heads_to_rows). `None` where that does not apply: rows that are not whole 16-byte vectors, a
/// start that is not 16-byte aligned, or a grid past the launch's limits.
pub(crate) fn heads_to_rows(ys: &Tensor) -> Result<Option<Tensor>> {
    fn run<T: CudaDType + DeviceRepr>(ys: &Tensor) -> Result<Option<Tensor>> {
        let (b, heads, t, d) = ys.dims4()?;
        let vecs = d * std::mem::size_of::<T>() / 16;
        let n = b * heads * t * vecs;
        let dev = cuda_device(ys)?;
        let stream = dev.cuda_stream();
        let (st, l) = ys.storage_and_layout();
        let mut syncs = Vec::new();
        let p_in = dptr::<T>(&st, l, &stream, &mut syncs)?;
        if p_in % 16 != 0 || n.div_ceil(256) > u32::MAX as usize || heads.max(t) > i32::MAX as usize {
            return Ok(None);
        }
        let (out, p_out) = output::<T>(dev, &(b, t, heads * d).into())?;
        let func = function(dev, &ATTENTION, "heads_to_rows")?;
        let stream = dev.cuda_stream();
        let cfg =
            LaunchConfig { grid_dim: (n.div_ceil(256) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let (bi, hi, ti, vi) = (b as i64, heads as i32, t as i32, vecs as i32);
        let mut builder = stream.launch_builder(&func);
        builder.arg(&p_in).arg(&p_out).arg(&bi).arg(&hi).arg(&ti).arg(&vi);
        // SAFETY: the arguments match heads_to_rows'; both buffers hold b·heads·t·d elements of T,
        // that is n 16-byte vectors, both 16-byte aligned (cudaMalloc's buffers are 256-aligned).
        unsafe { builder.launch(cfg) }.w()?;
        drop(syncs);
        Ok(Some(out))
    }
    let d = ys.dim(candle_core::D::Minus1)?;
    if ys.rank() != 4 || !ys.is_contiguous() || !(d * ys.dtype().size_in_bytes()).is_multiple_of(16) {
        return Ok(None);
    }
    by_dtype!(ys.dtype(), run(ys))
}
