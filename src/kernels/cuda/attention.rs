//! CUDA launches of attention.cu's decode attention, over the first `*pos + 1` positions of the
//! caches (the position read from device memory, so that a captured step replays for every token);
//! its prefill kernels are launched by `prefill.rs`.

use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig};
use candle_core::cuda_backend::{CudaDType, CudaDevice};
use candle_core::{Result, Shape, Tensor};

use super::decode::{by_dtype, cuda_device, dptr, output};
use super::launch::{arg, launch, Func, Module};
use super::suffix;
use crate::kernels::params::{AttnDecode, SPLIT_THREADS};

/// attention.cu: decode attention, the prompt's causal softmax and layout.
pub(super) static ATTENTION: Module = Module {
    name: "minilab_attention",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/attention.ptx")),
    cubin: include_bytes!(concat!(env!("OUT_DIR"), "/attention.cubin")),
};

fn attention_kernel(name: &str) -> Func<'_> {
    Func { name, module: &ATTENTION }
}

/// attention.cu's decode-attention kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// The plain kernel, the baseline the others are timed against.
    Simple,
    /// One block a query head.
    Single,
    /// The cache cut into chunks over many blocks, then merged.
    Split,
}

/// Caches longer than this take the split kernels. On the H200 (Llama 3.2 3B, BENCHMARKS.md) the
/// single kernel's one launch wins only while few positions are cached: tg128 from an empty cache is
/// 4 % faster with it, while a step at 520–583 positions takes 1.29× the split kernels' time (2.0×
/// at 1800, 3.1× at 4000).
const SPLIT_FROM: usize = 256;

/// The kernel for a cache of `cap` positions: `MINILAB_ATTENTION=simple|single|split` forces one
/// (for comparisons); otherwise, or for any other value, the single kernel up to [`SPLIT_FROM`]
/// positions and the split kernels past it.
fn kernel(cap: usize) -> Kernel {
    static FORCED: std::sync::OnceLock<Option<Kernel>> = std::sync::OnceLock::new();
    let forced = FORCED.get_or_init(|| match std::env::var("MINILAB_ATTENTION").as_deref() {
        Ok("simple") => Some(Kernel::Simple),
        Ok("single") => Some(Kernel::Single),
        Ok("split") => Some(Kernel::Split),
        _ => None,
    });
    forced.unwrap_or(if cap > SPLIT_FROM { Kernel::Split } else { Kernel::Single })
}

/// Threads of an attn_single block (attention.cu's SINGLE_THREADS).
const SINGLE_THREADS: usize = 256;
/// Threads of an attn_combine block.
const COMBINE_THREADS: usize = 256;

/// Longest cache attn_simple and attn_single take: they keep the scores of the whole cache in
/// shared memory.
const SINGLE_MAX_CONTEXT: usize = 8192;

/// Whether the fused attention takes these shapes: for the split kernels those that have a grid
/// ([`AttnDecode::split_grid`]); for the others a cache of up to 8192 positions.
pub(crate) fn attention_fits(op: &AttnDecode) -> bool {
    match kernel(op.cap) {
        Kernel::Split => op.split_grid(1, 1).is_some(),
        Kernel::Simple | Kernel::Single => op.cap <= SINGLE_MAX_CONTEXT,
    }
}

/// Decode attention of attention.cu over the first `*pos + 1` positions of the caches: q
/// `[b, heads, 1, d]`, k, v `[b, kv_heads, cap, d]` → `[b, heads, 1, d]`. Split over chunks of the
/// cache (two launches) for a long cache, else one block a query head (one launch).
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
        let a = Addrs { q: ptrs[0], k: ptrs[1], v: ptrs[2], out: p_out, pos: p_pos };
        let sfx = suffix(q.dtype())?;
        match kernel(op.cap) {
            Kernel::Split => split(dev, op, rows, &a, sfx)?,
            k => single(dev, op, rows, &a, sfx, k == Kernel::Simple)?,
        }
        drop(syncs);
        Ok(out)
    }
    by_dtype!(q.dtype(), run(op, q, k, v, pos))
}

/// Device addresses of one attention call's tensors.
struct Addrs {
    q: u64,
    k: u64,
    v: u64,
    out: u64,
    pos: u64,
}

/// attn_split then attn_combine, through an f32 scratch of the partials.
fn split(dev: &CudaDevice, op: &AttnDecode, rows: usize, a: &Addrs, sfx: &str) -> Result<()> {
    let sms = super::launch::sm_count(dev)?;
    let b = rows / op.heads;
    let Some(grid) = op.split_grid(b, sms) else {
        candle_core::bail!("attention: head too large for the split kernel")
    };
    let (s, cm) = (grid.chunks, grid.chunk_max);
    // o [rows, s, d], then (m, l) [rows, s, 2]
    let (_part, p_part) = output::<f32>(dev, &Shape::from(rows * s * (op.d + 2)))?;
    let name = format!("attn_split_{sfx}");
    let cfg = LaunchConfig {
        grid_dim: ((b * op.kv_heads) as u32, s as u32, 1),
        block_dim: (SPLIT_THREADS as u32, 1, 1),
        shared_mem_bytes: grid.shared_bytes as u32,
    };
    let ints = [op.heads, op.kv_heads, op.cap, op.d, cm].map(|x| x as i32);
    let mut args: Vec<_> = [&a.q, &a.k, &a.v, &p_part].into_iter().map(arg).collect();
    args.extend(ints.iter().map(arg));
    args.extend([arg(&op.scale), arg(&a.pos)]);
    // SAFETY: the arguments match attn_split's; it reads min(*pos + 1, cap) positions and writes the
    // rows · s partials, in chunks of at most cm positions (s · cm ≥ cap).
    unsafe { launch(dev, &attention_kernel(&name), cfg, &mut args) }?;
    let name = format!("attn_combine_{sfx}");
    // the weights, then one row of sums per group of d/4 threads
    let smem = (s.next_multiple_of(4) + COMBINE_THREADS / (op.d / 4) * op.d) * 4;
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (COMBINE_THREADS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let (si, di) = (s as i32, op.d as i32);
    let args = &mut [arg(&p_part), arg(&a.out), arg(&si), arg(&di)];
    // SAFETY: the arguments match attn_combine's; the partials hold rows · s entries, out rows · d.
    unsafe { launch(dev, &attention_kernel(&name), cfg, args) }?;
    Ok(())
}

/// attn_single (or attn_simple), one block a query head with the scores of the whole cache in shared
/// memory.
fn single(dev: &CudaDevice, op: &AttnDecode, rows: usize, a: &Addrs, sfx: &str, simple: bool) -> Result<()> {
    let name = format!("attn_{}_{sfx}", if simple { "simple" } else { "single" });
    // attn_single: q, the scores and 8 partial sums a thread; attn_simple: q and the scores
    let (threads, extra) = if simple { (128, 0) } else { (SINGLE_THREADS, 8 * SINGLE_THREADS) };
    let cfg = LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: ((op.d + op.cap + extra) * 4) as u32,
    };
    let ints = [op.heads, op.kv_heads, op.cap, op.cap, op.d].map(|x| x as i32);
    let mut args: Vec<_> = [&a.q, &a.k, &a.v, &a.out].into_iter().map(arg).collect();
    args.extend(ints.iter().map(arg));
    args.extend([arg(&op.scale), arg(&a.pos)]);
    // SAFETY: the arguments match attn_single's and attn_simple's; they read min(*pos + 1, cap)
    // positions, and the shared memory holds q, cap scores and the partial sums.
    unsafe { launch(dev, &attention_kernel(&name), cfg, &mut args) }?;
    Ok(())
}
