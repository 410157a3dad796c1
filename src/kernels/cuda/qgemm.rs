//! Launches of qgemm.cuh's prefill GEMM: `xs[…, k]·Wᵀ` for an int8 or NF4 weight `[n, k]`, the weight
//! dequantized tile by tile in shared memory.

use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute_enum;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{DType, Result, Storage, Tensor};
use half::{bf16, f16};

use super::decode::{cuda_device, dptr, output};
use super::{launch, part_pointers, suffix, GemvPart, LINEAR};
use crate::kernels::params::Format;
use crate::kernels::qgemm::{self, Tile, BLOCK_N};

// qgemm.cuh's constants: BK, the threads of a block, the pipeline's stages, the 16-bit tiles' row stride.
const BK: usize = 32;
const THREADS: u32 = 256;
const STAGES: usize = 3;
const LDS: usize = BK + 8;

/// Dynamic shared memory of a block (qgemm.cuh's smem_bytes): the xs and code stages, the absmax
/// stages and the dequantized tile.
fn smem_bytes(format: Format, bm: usize) -> usize {
    let qrow = if format == Format::Int8 { BK } else { BK / 2 };
    STAGES * bm * LDS * 2 + STAGES * BLOCK_N * qrow + STAGES * BLOCK_N * 4 + BLOCK_N * LDS * 2
}

/// One product to launch: `xs[…, k]·Wᵀ` for the weight `(a, b)` of `n` rows, `bm` rows of xs a block.
struct Launch<'a> {
    format: Format,
    xs: &'a Tensor,
    a: &'a Tensor,
    b: &'a Tensor,
    m: usize,
    n: usize,
    k: usize,
    bm: usize,
}

/// `xs[…, k]·Wᵀ` → `[…, n]` for a weight stored as `a` (int8 codes `[n, k]` / NF4 bytes `[n·k/2]`)
/// and `b` (scales `[n]` / absmax `[n·k/64]`); `None` where the kernel does not apply (an f32 model,
/// a shape of partial blocks, xs not 16-byte aligned, a grid past the launch limits). A weight of
/// the wrong size or not 16-byte aligned is an error, as for the decode GEMVs (`part_pointers`).
pub(crate) fn qgemm(
    format: Format,
    xs: &Tensor,
    (a, b): (&Tensor, &Tensor),
    (n, k): (usize, usize),
    tile: Tile,
) -> Result<Option<Tensor>> {
    if !qgemm::fits(n, k) || !xs.is_contiguous() || xs.dims().last() != Some(&k) {
        return Ok(None);
    }
    let m = xs.elem_count() / k;
    let bm = qgemm::tile_rows(tile, m, n, super::launch::sm_count(cuda_device(xs)?)?);
    if m.div_ceil(bm) > i32::MAX as usize || n / BLOCK_N > 65535 || m.max(n).max(k) > i32::MAX as usize {
        return Ok(None);
    }
    let launch = Launch { format, xs, a, b, m, n, k, bm };
    match xs.dtype() {
        DType::BF16 => run::<bf16>(&launch),
        DType::F16 => run::<f16>(&launch),
        _ => Ok(None),
    }
}

fn run<T: CudaDType + DeviceRepr>(l: &Launch<'_>) -> Result<Option<Tensor>> {
    let dev = cuda_device(l.xs)?;
    let stream = dev.cuda_stream();
    let ((sx, lx), (sa, la), (sb, lb)) =
        (l.xs.storage_and_layout(), l.a.storage_and_layout(), l.b.storage_and_layout());
    let mut syncs = Vec::new();
    let p_xs = dptr::<T>(&sx, lx, &stream, &mut syncs)?;
    if p_xs % 16 != 0 {
        return Ok(None);
    }
    let (Storage::Cuda(ca), Storage::Cuda(cb)) = (&*sa, &*sb) else {
        candle_core::bail!("qgemm: the weight is not on the GPU")
    };
    // the same sizes and alignment the decode GEMVs ask of this weight
    let part = GemvPart { format: l.format, a: (ca, la), b: Some((cb, lb)), n: l.n };
    let (p_a, p_b) = part_pointers::<T>(&part, l.k, &stream, &mut syncs)?;
    let mut dims = l.xs.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = l.n;
    }
    let (ys, p_ys) = output::<T>(dev, &dims.into())?;
    let kind = if l.format == Format::Int8 { "int8" } else { "nf4" };
    let name = format!("qgemm_{kind}_{}_bm{}", suffix(l.xs.dtype())?, l.bm);
    let func = launch::function(dev, &LINEAR, &name)?;
    let shared = smem_bytes(l.format, l.bm);
    // past 48 KB a block's dynamic shared memory must be asked for; cheap, and idempotent
    func.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared as i32)
        .w()?;
    let cfg = LaunchConfig {
        grid_dim: (l.m.div_ceil(l.bm) as u32, (l.n / BLOCK_N) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: shared as u32,
    };
    let (mi, ni, ki) = (l.m as i32, l.n as i32, l.k as i32);
    let mut builder = stream.launch_builder(&func);
    builder.arg(&p_xs).arg(&p_a).arg(&p_b).arg(&p_ys).arg(&mi).arg(&ni).arg(&ki);
    // SAFETY: the arguments match qgemm's; xs holds m·k elements of T from a 16-byte aligned start,
    // the weight n·k codes (checked by `qgemm`) and ys m·n elements; the kernel reads xs rows below m
    // only, and k, n are whole tiles (`qgemm::fits`).
    unsafe { builder.launch(cfg) }.w()?;
    drop(syncs);
    Ok(Some(ys))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures qgemm.cuh's comments give: 54 784 bytes for int8 at BM = 128 (past the 48 KB a
    /// launch gets without asking), 48 640 for NF4.
    #[test]
    fn shared_memory_matches_the_kernel() {
        assert_eq!(smem_bytes(Format::Int8, 128), 54_784);
        assert_eq!(smem_bytes(Format::Nf4, 128), 48_640);
        assert_eq!(smem_bytes(Format::Int8, 64), 39_424);
    }
}
