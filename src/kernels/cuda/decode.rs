//! CUDA launches of decode.cu: the fused small ops of a decode step. Each reads its position from
//! device memory, so that a captured step replays for every token. The decode attention is in
//! `attention.rs`.

use candle_core::cuda_backend::cudarc::driver::{CudaStream, DevicePtr, DeviceRepr, LaunchConfig, SyncOnDrop};
use candle_core::cuda_backend::{CudaDType, CudaDevice};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Layout, Result, Shape, Storage, Tensor, D};
use half::{bf16, f16};

use super::launch::{arg, launch, Func, Module};
use super::suffix;
use crate::kernels::decode::row_stride;
use crate::kernels::prefill_ops::wide;

/// decode.cu: the decode step's small fused kernels.
static DECODE: Module = Module {
    name: "minilab_decode",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/decode.ptx")),
    cubin: include_bytes!(concat!(env!("OUT_DIR"), "/decode.cubin")),
};

/// Bytes of one access of the wide kernels (common.cuh's load_wide).
pub(super) const WIDE_BYTES: usize = 16;
/// decode.cu's add_rms_norm_rows: threads a row, and 16-byte vectors a thread keeps.
const ROWS_THREADS: usize = 128;
const ROWS_VECS: usize = 8;

/// Whether every address is 16-byte aligned (the wide kernels' accesses).
pub(super) fn aligned(ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p % WIDE_BYTES as u64 == 0)
}

fn decode_kernel(name: &str) -> Func<'_> {
    Func { name, module: &DECODE }
}

pub(super) fn cuda_device(t: &Tensor) -> Result<&CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d),
        _ => candle_core::bail!("decode kernel: tensor not on the GPU"),
    }
}

/// The device address of a contiguous tensor of `T` (its sync guard goes to `syncs`).
pub(super) fn dptr<'a, T: CudaDType + DeviceRepr + 'a>(
    s: &'a Storage,
    l: &Layout,
    stream: &'a CudaStream,
    syncs: &mut Vec<SyncOnDrop<'a>>,
) -> Result<u64> {
    super::range(l)?;
    view_ptr::<T>(s, l, stream, syncs)
}

/// A fresh `[len]` buffer of `T` as a tensor of `shape`, with its address.
pub(super) fn output<T: CudaDType + DeviceRepr>(dev: &CudaDevice, shape: &Shape) -> Result<(Tensor, u64)> {
    // SAFETY: every element is written by the kernel that receives the address.
    let buf = unsafe { dev.alloc::<T>(shape.elem_count())? };
    let storage = CudaStorage::wrap_cuda_slice(buf, dev.clone());
    let t = Tensor::from_storage(Storage::Cuda(storage), shape.clone(), BackpropOp::none(), false);
    let p = {
        let (s, _) = t.storage_and_layout();
        let Storage::Cuda(c) = &*s else { candle_core::bail!("decode kernel: output not on the GPU") };
        let stream = dev.cuda_stream();
        let (p, _sync) = c.as_cuda_slice::<T>()?.device_ptr(&stream);
        p
    };
    Ok((t, p))
}

/// `$run::<T>(args)` for the element type of `$dtype` (full paths: the callers' imports differ).
macro_rules! by_dtype {
    ($dtype:expr, $run:ident($($arg:expr),*)) => {
        match $dtype {
            ::candle_core::DType::F32 => $run::<f32>($($arg),*),
            ::candle_core::DType::F16 => $run::<::half::f16>($($arg),*),
            ::candle_core::DType::BF16 => $run::<::half::bf16>($($arg),*),
            d => candle_core::bail!("decode kernel: no CUDA kernel for {d:?}"),
        }
    };
}
pub(super) use by_dtype;

/// `(xs + ys, RMSNorm(xs + ys)·w)` for `xs`, `ys` `[…, h]`, `w` `[h]`.
pub(crate) fn add_rms_norm(xs: &Tensor, ys: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    fn run<T: CudaDType + DeviceRepr>(xs: &Tensor, ys: &Tensor, w: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
        let dev = cuda_device(xs)?;
        let stream = dev.cuda_stream();
        let h = w.elem_count();
        let rows = xs.elem_count() / h;
        let (res, p_res) = output::<T>(dev, xs.shape())?;
        let (out, p_out) = output::<T>(dev, xs.shape())?;
        let ((sx, lx), (sy, ly), (sw, lw)) = (xs.storage_and_layout(), ys.storage_and_layout(), w.storage_and_layout());
        let mut syncs = Vec::new();
        let px = dptr::<T>(&sx, lx, &stream, &mut syncs)?;
        let py = dptr::<T>(&sy, ly, &stream, &mut syncs)?;
        let pw = dptr::<T>(&sw, lw, &stream, &mut syncs)?;
        // a prompt's rows: decode.cu's add_rms_norm_rows where its 16-byte accesses fit the row
        let n = WIDE_BYTES / std::mem::size_of::<T>();
        let wide =
            rows >= 2 && wide() && h.is_multiple_of(n) && h / n <= ROWS_VECS * ROWS_THREADS && aligned(&[px, py, pw]);
        let (kernel, threads) = if wide { ("add_rms_norm_rows", ROWS_THREADS) } else { ("add_rms_norm", 1024) };
        let name = format!("{kernel}_{}", suffix(xs.dtype())?);
        let cfg =
            LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (threads as u32, 1, 1), shared_mem_bytes: 0 };
        let hi = h as i32;
        let args = &mut [arg(&px), arg(&py), arg(&pw), arg(&p_res), arg(&p_out), arg(&hi), arg(&eps)];
        // SAFETY: the arguments match add_rms_norm's; every buffer holds rows × h elements (w: h).
        unsafe { launch(dev, &decode_kernel(&name), cfg, args) }?;
        drop(syncs);
        Ok((res, out))
    }
    let h = w.elem_count();
    if xs.shape() != ys.shape() || xs.dims().last() != Some(&h) || w.dtype() != xs.dtype() || ys.dtype() != xs.dtype() {
        candle_core::bail!("add_rms_norm: shapes {:?} + {:?}, weight {:?}", xs.dims(), ys.dims(), w.dims());
    }
    by_dtype!(xs.dtype(), run(xs, ys, w, eps))
}

/// The shapes of one [`rope_kv`] launch.
pub(crate) struct RopeKv {
    pub b: usize,
    /// Tokens a sequence: 1 in a decode step, the prompt's length in a prefill.
    pub t: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub cap: usize,
    pub d: usize,
}

/// Rotates q `[b, t, heads·d]` and k `[b, t, kv_heads·d]` at `*pos..*pos + t`, writes k and v into
/// the caches `[b, kv_heads, cap, d]` there and returns q `[b, heads, t, d]`.
pub(crate) fn rope_kv(
    s: &RopeKv,
    [q, k, v]: [&Tensor; 3],
    [cos, sin]: [&Tensor; 2],
    pos: &Tensor,
    [k_cache, v_cache]: [&Tensor; 2],
) -> Result<Tensor> {
    // q, k and v are read in place where each is a row view (a stacked prompt's column ranges); else
    // all three are copied, and a copy's rows lie one row width apart.
    let own: Vec<Tensor>;
    let ([q, k, v], lds) = match [q, k, v].map(row_stride) {
        [Some(ld_q), Some(ld_k), Some(ld_v)] => ([q, k, v], [ld_q, ld_k, ld_v]),
        _ => {
            own = [q, k, v].iter().map(|x| x.contiguous()).collect::<Result<_>>()?;
            let [q, k, v] = [&own[0], &own[1], &own[2]];
            ([q, k, v], [q.dim(D::Minus1)?, k.dim(D::Minus1)?, v.dim(D::Minus1)?])
        }
    };
    check_rope_kv(s, [q, k, v], lds, [cos, sin], pos, [k_cache, v_cache])?;
    by_dtype!(q.dtype(), rope_kv_launch(s, [q, k, v], lds, [cos, sin], pos, [k_cache, v_cache]))
}

/// [`rope_kv`]'s sizes, dtypes and grid against `s`, before anything launches.
fn check_rope_kv(
    s: &RopeKv,
    [q, k, v]: [&Tensor; 3],
    lds: [usize; 3],
    [cos, sin]: [&Tensor; 2],
    pos: &Tensor,
    [k_cache, v_cache]: [&Tensor; 2],
) -> Result<()> {
    let want = [
        s.b * s.t * s.heads * s.d,
        s.b * s.t * s.kv_heads * s.d,
        s.b * s.t * s.kv_heads * s.d,
        s.b * s.kv_heads * s.cap * s.d,
        s.b * s.kv_heads * s.cap * s.d,
    ];
    let got = [q, k, v, k_cache, v_cache].map(|t| t.elem_count());
    let same = [k, v, cos, sin, k_cache, v_cache].iter().all(|t| t.dtype() == q.dtype());
    if got != want || !same || pos.dtype() != DType::U32 || cos.dim(1)? != s.d / 2 || !s.d.is_multiple_of(2) {
        candle_core::bail!("rope_kv: sizes {got:?} (want {want:?}) or dtypes do not match");
    }
    let blocks = (s.b * s.t * (s.heads + 2 * s.kv_heads) * (s.d / 2)).div_ceil(256);
    if [s.b, s.t, s.cap, cos.dim(0)?].iter().chain(&lds).any(|&x| x > i32::MAX as usize) || blocks > u32::MAX as usize {
        candle_core::bail!("rope_kv: {} tokens of {} heads is past the kernel's grid", s.b * s.t, s.heads);
    }
    Ok(())
}

/// [`rope_kv`] on checked shapes: decode.cu's `rope_kv`, or `rope_kv_wide` for a prompt whose rows
/// and tables fit its 16-byte accesses.
fn rope_kv_launch<T: CudaDType + DeviceRepr>(
    s: &RopeKv,
    qkv: [&Tensor; 3],
    lds: [usize; 3],
    tables: [&Tensor; 2],
    pos: &Tensor,
    caches: [&Tensor; 2],
) -> Result<Tensor> {
    let dev = cuda_device(pos)?;
    let stream = dev.cuda_stream();
    let (q_out, p_out) = output::<T>(dev, &Shape::from((s.b, s.heads, s.t, s.d)))?;
    let guards: Vec<_> = qkv.iter().chain(&tables).chain(&caches).map(|t| t.storage_and_layout()).collect();
    let (sp, lp) = pos.storage_and_layout();
    let mut syncs = Vec::new();
    // q, k and v may be row views (their first element's address); the rest are contiguous
    let ptrs = guards
        .iter()
        .enumerate()
        .map(
            |(i, (st, l))| {
                if i < 3 {
                    view_ptr::<T>(st, l, &stream, &mut syncs)
                } else {
                    dptr::<T>(st, l, &stream, &mut syncs)
                }
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let p_pos = dptr::<u32>(&sp, lp, &stream, &mut syncs)?;
    // a prompt: decode.cu's rope_kv_wide where its 16-byte accesses fit every row and table
    let per = WIDE_BYTES / std::mem::size_of::<T>();
    let wide = s.t >= 2
        && wide()
        && (s.d / 2).is_multiple_of(per)
        && lds.iter().all(|ld| ld.is_multiple_of(per))
        && aligned(&ptrs);
    let (kernel, pairs) = if wide { ("rope_kv_wide", per) } else { ("rope_kv", 1) };
    let name = format!("{kernel}_{}", suffix(qkv[0].dtype())?);
    let threads = s.b * s.t * (s.heads + 2 * s.kv_heads) * (s.d / 2 / pairs);
    let cfg =
        LaunchConfig { grid_dim: (threads.div_ceil(256) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let max_pos = tables[0].dim(0)?;
    let [ld_q, ld_k, ld_v] = lds;
    let ints = [s.b, s.t, s.heads, s.kv_heads, s.cap, s.d, max_pos, ld_q, ld_k, ld_v].map(|x| x as i32);
    let mut args: Vec<_> = ptrs[..5].iter().chain([&p_pos, &p_out]).chain(&ptrs[5..7]).map(arg).collect();
    args.extend(ints.iter().map(arg));
    // SAFETY: the arguments match rope_kv's; the shapes were checked against `s`, and the kernel
    // writes the caches only at *pos + j, and only where that is below `cap` and `max_pos`.
    unsafe { launch(dev, &decode_kernel(&name), cfg, &mut args) }?;
    drop(syncs);
    Ok(q_out)
}

/// The device address of a view's first element (a row view: [`row_stride`]): its layout's start,
/// which candle keeps within the storage with every row it reaches.
fn view_ptr<'a, T: CudaDType + DeviceRepr + 'a>(
    s: &'a Storage,
    l: &Layout,
    stream: &'a CudaStream,
    syncs: &mut Vec<SyncOnDrop<'a>>,
) -> Result<u64> {
    let Storage::Cuda(c) = s else { candle_core::bail!("decode kernel: tensor not on the GPU") };
    let (p, sync) = c.as_cuda_slice::<T>()?.device_ptr(stream);
    syncs.push(sync);
    Ok(p + (l.start_offset() * std::mem::size_of::<T>()) as u64)
}

/// The device addresses of `tensors` (contiguous; f32, f16, bf16, u32 or u8 on the GPU); `f` runs
/// while they hold.
pub(crate) fn with_addresses<R>(tensors: &[&Tensor], f: impl FnOnce(&[u64]) -> Result<R>) -> Result<R> {
    let Some(first) = tensors.first() else { return f(&[]) };
    let stream = cuda_device(first)?.cuda_stream();
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut syncs = Vec::new();
    let mut ptrs = Vec::with_capacity(tensors.len());
    for ((st, l), t) in guards.iter().zip(tensors) {
        ptrs.push(match t.dtype() {
            DType::F32 => dptr::<f32>(st, l, &stream, &mut syncs)?,
            DType::F16 => dptr::<f16>(st, l, &stream, &mut syncs)?,
            DType::BF16 => dptr::<bf16>(st, l, &stream, &mut syncs)?,
            DType::U32 => dptr::<u32>(st, l, &stream, &mut syncs)?,
            DType::U8 => dptr::<u8>(st, l, &stream, &mut syncs)?,
            d => candle_core::bail!("decode kernel: no CUDA kernel for {d:?}"),
        });
    }
    let out = f(&ptrs);
    drop(syncs);
    out
}

/// gemv_accumulate.cuh's `Rope` for a q/k/v launch that also does [`rope_kv`]'s work (`s.b` rows of xs), from
/// the tensors `rope_kv` takes, checked the same way; `f` launches while their addresses hold.
pub(crate) fn with_rope_arg<R>(
    s: &RopeKv,
    [cos, sin]: [&Tensor; 2],
    pos: &Tensor,
    [k_cache, v_cache]: [&Tensor; 2],
    f: impl FnOnce(super::RopeArg) -> Result<R>,
) -> Result<R> {
    let dtype = cos.dtype();
    let cache = s.b * s.kv_heads * s.cap * s.d;
    let same = [sin, k_cache, v_cache].iter().all(|t| t.dtype() == dtype);
    if k_cache.elem_count() != cache
        || v_cache.elem_count() != cache
        || !same
        || pos.dtype() != DType::U32
        || pos.elem_count() != 1
        || cos.rank() != 2
        || cos.dim(1)? != s.d / 2
        || sin.dims() != cos.dims()
        || !s.d.is_multiple_of(2)
    {
        candle_core::bail!("rope in the q/k/v launch: caches, tables or position do not match");
    }
    let [d, cap, max_pos] = [s.d, s.cap, cos.dim(0)?].map(|x| x as i32);
    with_addresses(&[cos, sin, pos, k_cache, v_cache], |p| {
        f(super::RopeArg { cos: p[0], sin: p[1], pos: p[2], k_cache: p[3], v_cache: p[4], d, cap, max_pos, pad: 0 })
    })
}

/// `silu(gate)·up`, both `[…, n]`.
pub(crate) fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    fn run<T: CudaDType + DeviceRepr>(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        let dev = cuda_device(gate)?;
        let stream = dev.cuda_stream();
        let n = gate.elem_count();
        let (out, p_out) = output::<T>(dev, gate.shape())?;
        let ((sg, lg), (su, lu)) = (gate.storage_and_layout(), up.storage_and_layout());
        let mut syncs = Vec::new();
        let pg = dptr::<T>(&sg, lg, &stream, &mut syncs)?;
        let pu = dptr::<T>(&su, lu, &stream, &mut syncs)?;
        let sfx = suffix(gate.dtype())?;
        let per = WIDE_BYTES / std::mem::size_of::<T>();
        let rows = n / gate.dims().last().copied().unwrap_or(1).max(1);
        if rows >= 2 && wide() && n.is_multiple_of(per) && aligned(&[pg, pu]) {
            let vecs = (n / per) as i64;
            let cfg = LaunchConfig {
                grid_dim: ((n / per).div_ceil(256) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let name = format!("silu_mul_wide_{sfx}");
            // SAFETY: the arguments match silu_mul_wide's; all three buffers hold vecs 16-byte vectors.
            unsafe { launch(dev, &decode_kernel(&name), cfg, &mut [arg(&pg), arg(&pu), arg(&p_out), arg(&vecs)]) }?;
            drop(syncs);
            return Ok(out);
        }
        let name = format!("silu_mul_{sfx}");
        let cfg =
            LaunchConfig { grid_dim: (n.div_ceil(256) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let ni = n as i32;
        // SAFETY: the arguments match silu_mul's; all three buffers hold n elements.
        unsafe { launch(dev, &decode_kernel(&name), cfg, &mut [arg(&pg), arg(&pu), arg(&p_out), arg(&ni)]) }?;
        drop(syncs);
        Ok(out)
    }
    if gate.shape() != up.shape() || gate.dtype() != up.dtype() {
        candle_core::bail!("silu_mul: shapes {:?} and {:?}", gate.dims(), up.dims());
    }
    by_dtype!(gate.dtype(), run(gate, up))
}
