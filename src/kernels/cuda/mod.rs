//! CUDA launches of the kernels in `linear.cu`: fused dequantize-GEMV for decode, one-pass
//! dequantize for prefill (whose product then goes to cuBLAS through candle's matmul).

use super::params::{AttnDecode, Format};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};
use half::{bf16, f16};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/linear.ptx"));
const MODULE: &str = "minilab_linear";
/// Output rows per block of the GEMV: one warp each (WARPS in linear.cu).
const ROWS_PER_BLOCK: usize = 4;

fn range(l: &Layout) -> Result<std::ops::Range<usize>> {
    match l.contiguous_offsets() {
        Some((s, e)) => Ok(s..e),
        None => candle_core::bail!("linear kernel: tensor not contiguous"),
    }
}

fn suffix(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        d => candle_core::bail!("linear kernel: no CUDA kernel for {d:?} activations"),
    })
}

/// `ys[m, n] = xs[m, k]·Wᵀ` with W as int8 (codes, scales) or NF4 (packed, absmax).
pub fn gemv(
    format: Format,
    (xs, lx): (&CudaStorage, &Layout),
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
    n: usize,
    k: usize,
) -> Result<CudaStorage> {
    fn run<T: CudaDType + DeviceRepr>(
        name: &str,
        (xs, lx): (&CudaStorage, &Layout),
        (a, la): (&CudaStorage, &Layout),
        (b, lb): (&CudaStorage, &Layout),
        n: usize,
        k: usize,
    ) -> Result<CudaStorage> {
        let dev = &xs.device;
        let rx = range(lx)?;
        if !(rx.start * std::mem::size_of::<T>()).is_multiple_of(16) {
            candle_core::bail!("linear kernel: xs is not 16-byte aligned");
        }
        let m = rx.len() / k;
        let x = xs.as_cuda_slice::<T>()?.slice(rx);
        let a = a.as_cuda_slice::<u8>()?.slice(range(la)?);
        let b = b.as_cuda_slice::<f32>()?.slice(range(lb)?);
        // SAFETY: every element is written by the kernel.
        let ys = unsafe { dev.alloc::<T>(m * n)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let cfg = gemv_config(n);
        let (m, n, k) = (m as i32, n as i32, k as i32);
        let mut builder = func.builder();
        builder.arg(&x).arg(&a).arg(&b).arg(&ys).arg(&m).arg(&n).arg(&k);
        // SAFETY: the argument list matches the kernel's signature; sizes were checked by the caller.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(ys, dev.clone()))
    }
    let kind = if format == Format::Int8 { "int8" } else { "nf4" };
    let name = format!("gemv_{kind}_{}", suffix(xs.dtype())?);
    let args = ((xs, lx), (a, la), (b, lb));
    match xs.dtype() {
        DType::F32 => run::<f32>(&name, args.0, args.1, args.2, n, k),
        DType::F16 => run::<f16>(&name, args.0, args.1, args.2, n, k),
        _ => run::<bf16>(&name, args.0, args.1, args.2, n, k),
    }
}

/// `ys[m, n] = xs[m, k]·Wᵀ` for a dense `W` `[n, k]` of the same dtype as `xs`.
pub fn gemv_dense(
    (xs, lx): (&CudaStorage, &Layout),
    (w, lw): (&CudaStorage, &Layout),
    n: usize,
    k: usize,
) -> Result<CudaStorage> {
    fn run<T: CudaDType + DeviceRepr>(
        name: &str,
        (xs, lx): (&CudaStorage, &Layout),
        (w, lw): (&CudaStorage, &Layout),
        n: usize,
        k: usize,
    ) -> Result<CudaStorage> {
        let dev = &xs.device;
        let (rx, rw) = (range(lx)?, range(lw)?);
        let size = std::mem::size_of::<T>();
        if !(rx.start * size).is_multiple_of(16) || !(rw.start * size).is_multiple_of(16) {
            candle_core::bail!("linear kernel: xs or w is not 16-byte aligned");
        }
        let m = rx.len() / k;
        let x = xs.as_cuda_slice::<T>()?.slice(rx);
        let w = w.as_cuda_slice::<T>()?.slice(rw);
        // SAFETY: every element is written by the kernel.
        let ys = unsafe { dev.alloc::<T>(m * n)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let (m, n, k) = (m as i32, n as i32, k as i32);
        let mut builder = func.builder();
        builder.arg(&x).arg(&w).arg(&ys).arg(&m).arg(&n).arg(&k);
        // SAFETY: the argument list matches the kernel's signature; sizes were checked by the caller.
        unsafe { builder.launch(gemv_config(n as usize)) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(ys, dev.clone()))
    }
    if xs.dtype() != w.dtype() {
        candle_core::bail!("linear kernel: xs is {:?} but the weight is {:?}", xs.dtype(), w.dtype());
    }
    let name = format!("gemv_dense_{}", suffix(xs.dtype())?);
    match xs.dtype() {
        DType::F32 => run::<f32>(&name, (xs, lx), (w, lw), n, k),
        DType::F16 => run::<f16>(&name, (xs, lx), (w, lw), n, k),
        _ => run::<bf16>(&name, (xs, lx), (w, lw), n, k),
    }
}

fn gemv_config(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The `[n, k]` weight in `dtype`, dequantized in one pass.
pub fn dequantize(
    format: Format,
    (a, la): (&CudaStorage, &Layout),
    (b, lb): (&CudaStorage, &Layout),
    n: usize,
    k: usize,
    dtype: DType,
) -> Result<CudaStorage> {
    fn run<T: CudaDType + DeviceRepr>(
        format: Format,
        name: &str,
        (a, la): (&CudaStorage, &Layout),
        (b, lb): (&CudaStorage, &Layout),
        n: usize,
        k: usize,
    ) -> Result<CudaStorage> {
        let dev = &a.device;
        let a = a.as_cuda_slice::<u8>()?.slice(range(la)?);
        let b = b.as_cuda_slice::<f32>()?.slice(range(lb)?);
        // SAFETY: every element is written by the kernel.
        let w = unsafe { dev.alloc::<T>(n * k)? };
        let func = dev.get_or_load_custom_func(name, MODULE, PTX)?;
        let threads = (n * k).div_ceil(8);
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = func.builder();
        builder.arg(&a).arg(&b).arg(&w);
        let (ni, ki, len) = (n as i32, k as i32, (n * k) as u64);
        if format == Format::Int8 {
            builder.arg(&ni).arg(&ki);
        } else {
            builder.arg(&len);
        }
        // SAFETY: the argument list matches the kernel's signature.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(w, dev.clone()))
    }
    let kind = if format == Format::Int8 { "int8" } else { "nf4" };
    let name = format!("dequant_{kind}_{}", suffix(dtype)?);
    match dtype {
        DType::F32 => run::<f32>(format, &name, (a, la), (b, lb), n, k),
        DType::F16 => run::<f16>(format, &name, (a, la), (b, lb), n, k),
        _ => run::<bf16>(format, &name, (a, la), (b, lb), n, k),
    }
}

const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));

/// One block per (sequence, head); see attention.cu.
pub(crate) fn attn_decode(
    op: &AttnDecode,
    (q, lq): (&CudaStorage, &Layout),
    (k, lk): (&CudaStorage, &Layout),
    (v, lv): (&CudaStorage, &Layout),
) -> Result<CudaStorage> {
    fn run<T: CudaDType + DeviceRepr>(
        op: &AttnDecode,
        name: &str,
        (q, lq): (&CudaStorage, &Layout),
        (k, lk): (&CudaStorage, &Layout),
        (v, lv): (&CudaStorage, &Layout),
    ) -> Result<CudaStorage> {
        let dev = &q.device;
        let rq = range(lq)?;
        let rows = rq.len() / op.d;
        let q = q.as_cuda_slice::<T>()?.slice(rq);
        let k = k.as_cuda_slice::<T>()?.slice(range(lk)?);
        let v = v.as_cuda_slice::<T>()?.slice(range(lv)?);
        // SAFETY: every element is written by the kernel.
        let out = unsafe { dev.alloc::<T>(rows * op.d)? };
        let func = dev.get_or_load_custom_func(name, "minilab_attention", ATTENTION_PTX)?;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: ((op.d + op.total) * 4) as u32,
        };
        let ints = [op.heads, op.kv_heads, op.cap, op.total, op.d].map(|x| x as i32);
        let mut builder = func.builder();
        builder.arg(&q).arg(&k).arg(&v).arg(&out);
        for x in &ints {
            builder.arg(x);
        }
        builder.arg(&op.scale);
        // SAFETY: the argument list matches the kernel's signature; shapes were checked by the caller.
        unsafe { builder.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }
    let name = format!("attn_decode_{}", suffix(q.dtype())?);
    match q.dtype() {
        DType::F32 => run::<f32>(op, &name, (q, lq), (k, lk), (v, lv)),
        DType::F16 => run::<f16>(op, &name, (q, lq), (k, lk), (v, lv)),
        _ => run::<bf16>(op, &name, (q, lq), (k, lk), (v, lv)),
    }
}
