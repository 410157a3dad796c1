//! CUDA launches of decode.cu: the fused small ops of a decode step. Each reads its position from
//! device memory, so that a captured step replays for every token.

use candle_core::cuda_backend::cudarc::driver::{
    CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg, SyncOnDrop,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::op::BackpropOp;
use candle_core::{CudaStorage, DType, Device, Layout, Result, Shape, Storage, Tensor};
use half::{bf16, f16};

use super::suffix;
use crate::kernels::params::AttnDecode;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode.ptx"));
const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention.ptx"));
const MODULE: &str = "minilab_decode";
/// Threads of a decode-attention block (attention.cu's THREADS).
const ATTENTION_THREADS: usize = 256;

fn cuda_device(t: &Tensor) -> Result<&CudaDevice> {
    match t.device() {
        Device::Cuda(d) => Ok(d),
        _ => candle_core::bail!("decode kernel: tensor not on the GPU"),
    }
}

/// The device address of a contiguous tensor of `T` (its sync guard goes to `syncs`).
fn dptr<'a, T: CudaDType + DeviceRepr + 'a>(
    s: &'a Storage,
    l: &Layout,
    stream: &'a CudaStream,
    syncs: &mut Vec<SyncOnDrop<'a>>,
) -> Result<u64> {
    let Storage::Cuda(c) = s else { candle_core::bail!("decode kernel: tensor not on the GPU") };
    let start = super::range(l)?.start;
    let (p, sync) = c.as_cuda_slice::<T>()?.device_ptr(stream);
    syncs.push(sync);
    Ok(p + (start * std::mem::size_of::<T>()) as u64)
}

/// A fresh `[len]` buffer of `T` as a tensor of `shape`, with its address.
fn output<T: CudaDType + DeviceRepr>(dev: &CudaDevice, shape: &Shape) -> Result<(Tensor, u64)> {
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

macro_rules! by_dtype {
    ($dtype:expr, $run:ident($($arg:expr),*)) => {
        match $dtype {
            DType::F32 => $run::<f32>($($arg),*),
            DType::F16 => $run::<f16>($($arg),*),
            DType::BF16 => $run::<bf16>($($arg),*),
            d => candle_core::bail!("decode kernel: no CUDA kernel for {d:?}"),
        }
    };
}

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
        let func = dev.get_or_load_custom_func(&format!("add_rms_norm_{}", suffix(xs.dtype())?), MODULE, PTX)?;
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        let hi = h as i32;
        let mut b = func.builder();
        b.arg(&px).arg(&py).arg(&pw).arg(&p_res).arg(&p_out).arg(&hi).arg(&eps);
        // SAFETY: the arguments match add_rms_norm's; every buffer holds rows × h elements (w: h).
        unsafe { b.launch(cfg) }.w()?;
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
    pub heads: usize,
    pub kv_heads: usize,
    pub cap: usize,
    pub d: usize,
}

/// Rotates q `[b, heads·d]` and k `[b, kv_heads·d]` at `*pos`, writes k and v into the caches
/// `[b, kv_heads, cap, d]` at `*pos` and returns q `[b, heads, 1, d]`.
pub(crate) fn rope_kv(
    s: &RopeKv,
    [q, k, v]: [&Tensor; 3],
    [cos, sin]: [&Tensor; 2],
    pos: &Tensor,
    [k_cache, v_cache]: [&Tensor; 2],
) -> Result<Tensor> {
    fn run<T: CudaDType + DeviceRepr>(
        s: &RopeKv,
        qkv: [&Tensor; 3],
        tables: [&Tensor; 2],
        pos: &Tensor,
        caches: [&Tensor; 2],
    ) -> Result<Tensor> {
        let dev = cuda_device(pos)?;
        let stream = dev.cuda_stream();
        let (q_out, p_out) = output::<T>(dev, &Shape::from((s.b, s.heads, 1, s.d)))?;
        let guards: Vec<_> = qkv.iter().chain(&tables).chain(&caches).map(|t| t.storage_and_layout()).collect();
        let (sp, lp) = pos.storage_and_layout();
        let mut syncs = Vec::new();
        let ptrs = guards.iter().map(|(st, l)| dptr::<T>(st, l, &stream, &mut syncs)).collect::<Result<Vec<_>>>()?;
        let p_pos = dptr::<u32>(&sp, lp, &stream, &mut syncs)?;
        let func = dev.get_or_load_custom_func(&format!("rope_kv_{}", suffix(qkv[0].dtype())?), MODULE, PTX)?;
        let threads = s.b * (s.heads + 2 * s.kv_heads) * (s.d / 2);
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let max_pos = tables[0].dim(0)?;
        let ints = [s.b, s.heads, s.kv_heads, s.cap, s.d, max_pos].map(|x| x as i32);
        let mut b = func.builder();
        b.arg(&ptrs[0]).arg(&ptrs[1]).arg(&ptrs[2]).arg(&ptrs[3]).arg(&ptrs[4]).arg(&p_pos);
        b.arg(&p_out).arg(&ptrs[5]).arg(&ptrs[6]);
        for x in &ints {
            b.arg(x);
        }
        // SAFETY: the arguments match rope_kv's; the shapes were checked against `s`, and the kernel
        // writes the caches only at *pos, and only when it is below `cap` and `max_pos`.
        unsafe { b.launch(cfg) }.w()?;
        drop(syncs);
        Ok(q_out)
    }
    let dtype = q.dtype();
    let want = [
        s.b * s.heads * s.d,
        s.b * s.kv_heads * s.d,
        s.b * s.kv_heads * s.d,
        s.b * s.kv_heads * s.cap * s.d,
        s.b * s.kv_heads * s.cap * s.d,
    ];
    let got = [q, k, v, k_cache, v_cache].map(|t| t.elem_count());
    let same = [k, v, cos, sin, k_cache, v_cache].iter().all(|t| t.dtype() == dtype);
    if got != want || !same || pos.dtype() != DType::U32 || cos.dim(1)? != s.d / 2 || !s.d.is_multiple_of(2) {
        candle_core::bail!("rope_kv: sizes {got:?} (want {want:?}) or dtypes do not match");
    }
    by_dtype!(dtype, run(s, [q, k, v], [cos, sin], pos, [k_cache, v_cache]))
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
        let func = dev.get_or_load_custom_func(&format!("silu_mul_{}", suffix(gate.dtype())?), MODULE, PTX)?;
        let cfg =
            LaunchConfig { grid_dim: (n.div_ceil(256) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let ni = n as i32;
        let mut b = func.builder();
        b.arg(&pg).arg(&pu).arg(&p_out).arg(&ni);
        // SAFETY: the arguments match silu_mul's; all three buffers hold n elements.
        unsafe { b.launch(cfg) }.w()?;
        drop(syncs);
        Ok(out)
    }
    if gate.shape() != up.shape() || gate.dtype() != up.dtype() {
        candle_core::bail!("silu_mul: shapes {:?} and {:?}", gate.dims(), up.dims());
    }
    by_dtype!(gate.dtype(), run(gate, up))
}

/// Off (`MINILAB_ATTENTION=simple`): attention.cu's plain kernel, the baseline the fast one is
/// timed against.
static FAST_ATTENTION: crate::switch::Switch = crate::switch::Switch::new("MINILAB_ATTENTION", &["simple"]);

/// Decode attention of attention.cu over the first `*pos + 1` positions of the caches: q
/// `[b, heads, 1, d]`, k, v `[b, kv_heads, cap, d]` → `[b, heads, 1, d]`.
pub(crate) fn attention(op: &AttnDecode, q: &Tensor, k: &Tensor, v: &Tensor, pos: &Tensor) -> Result<Tensor> {
    fn run<T: CudaDType + DeviceRepr>(
        op: &AttnDecode,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        pos: &Tensor,
    ) -> Result<Tensor> {
        let dev = cuda_device(q)?;
        let stream = dev.cuda_stream();
        let rows = q.elem_count() / op.d;
        let (out, p_out) = output::<T>(dev, q.shape())?;
        let guards: Vec<_> = [q, k, v].iter().map(|t| t.storage_and_layout()).collect();
        let (sp, lp) = pos.storage_and_layout();
        let mut syncs = Vec::new();
        let ptrs = guards.iter().map(|(st, l)| dptr::<T>(st, l, &stream, &mut syncs)).collect::<Result<Vec<_>>>()?;
        let p_pos = dptr::<u32>(&sp, lp, &stream, &mut syncs)?;
        let simple = !FAST_ATTENTION.get();
        let name = format!("attn_{}_{}", if simple { "simple" } else { "decode" }, suffix(q.dtype())?);
        let func = dev.get_or_load_custom_func(&name, "minilab_attention", ATTENTION_PTX)?;
        // Scores for the whole cache: the size is then the same at every position.
        let (threads, extra) = if simple { (128, 0) } else { (ATTENTION_THREADS, 8 * ATTENTION_THREADS) };
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (threads as u32, 1, 1),
            // q, the scores and (attn_decode) 8 partial sums a thread
            shared_mem_bytes: ((op.d + op.cap + extra) * 4) as u32,
        };
        let ints = [op.heads, op.kv_heads, op.cap, op.cap, op.d].map(|x| x as i32);
        let mut b = func.builder();
        b.arg(&ptrs[0]).arg(&ptrs[1]).arg(&ptrs[2]).arg(&p_out);
        for x in &ints {
            b.arg(x);
        }
        b.arg(&op.scale).arg(&p_pos);
        // SAFETY: the arguments match attn_decode's; the kernel reads min(*pos + 1, cap) positions.
        unsafe { b.launch(cfg) }.w()?;
        drop(syncs);
        Ok(out)
    }
    by_dtype!(q.dtype(), run(op, q, k, v, pos))
}
