//! The launch of flash.cu: a prompt's causal attention in one kernel.

use candle_core::cuda_backend::cudarc::driver::{sys, DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::{DType, Device, Result, Tensor};
use half::{bf16, f16};

use super::decode::{aligned, cuda_device, dptr, output};
use super::launch::{function, sm_count, Module};
use super::suffix;
use crate::kernels::flash::{split_min, Build};

/// flash.cu.
static FLASH: Module = Module {
    name: "minilab_flash",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/flash.ptx")),
    cubin: include_bytes!(concat!(env!("OUT_DIR"), "/flash.cubin")),
};
/// flash.cu's rows a block (BM) and threads a block (4 warps).
const BLOCK_ROWS: usize = 64;
const THREADS: u32 = 128;

/// Whether flash.cu runs here: built for sm_80 or later (its mma.sync on 16-bit inputs), on such a
/// GPU. Asked of the driver once: minilab drives one GPU a process, and this is asked every layer.
fn supported(dev: &CudaDevice) -> bool {
    use sys::CUdevice_attribute_enum as Attr;
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let built = env!("MINILAB_CUDA_ARCH").parse::<u32>().is_ok_and(|a| a >= 80);
        let major = dev.cuda_stream().context().attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        built && major.is_ok_and(|m| m >= 8)
    })
}

/// `softmax(scale·q·kᵀ + causal mask)·v` by flash.cu: q `[b, heads, t, d]` (contiguous) at positions
/// `start..start + t`, k and v `[b, kv_heads, cap, d]` (contiguous buffers whose first `start + t`
/// positions are filled) → `[b, t, heads·d]`, by `build`. `None` where the kernel does not apply:
/// a dtype other than bf16/f16, d other than 64 or 128, a GPU or build before sm_80, or sizes past
/// its indices.
pub(crate) fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: usize,
    scale: f32,
    build: Build,
) -> Result<Option<Tensor>> {
    if !fits(q, k, v, start) || !q.device().is_cuda() || !supported(cuda_device(q)?) {
        return Ok(None);
    }
    match q.dtype() {
        DType::BF16 => launch::<bf16>(q, k, v, start, scale, build),
        DType::F16 => launch::<f16>(q, k, v, start, scale, build),
        _ => Ok(None),
    }
}

/// Whether the shapes are flash.cu's and its 32-bit row and token indices hold them.
fn fits(q: &Tensor, k: &Tensor, v: &Tensor, start: usize) -> bool {
    let (Ok((b, heads, t, d)), Ok((kb, kv_heads, cap, kd))) = (q.dims4(), k.dims4()) else { return false };
    let below_i32 = |n: Option<usize>| n.is_some_and(|n| n + BLOCK_ROWS <= i32::MAX as usize);
    k.dims() == v.dims()
        && (kb, kd) == (b, d)
        && matches!(d, 64 | 128)
        && kv_heads > 0
        && heads.is_multiple_of(kv_heads)
        && t > 0
        && start.checked_add(t).is_some_and(|total| total <= cap)
        && [q, k, v].iter().all(|x| x.is_contiguous() && x.dtype() == q.dtype())
        && below_i32((heads / kv_heads).checked_mul(t))
        && below_i32(b.checked_mul(t))
        && below_i32(start.checked_add(t))
        && cap.checked_mul(d).is_some_and(|n| n <= i64::MAX as usize)
        && b.checked_mul(kv_heads).is_some_and(|blocks| blocks <= u16::MAX as usize)
}

/// The launch, `None` where q, k or v do not start 16-byte aligned (cp.async's copies).
fn launch<T: CudaDType + DeviceRepr>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    start: usize,
    scale: f32,
    build: Build,
) -> Result<Option<Tensor>> {
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, cap, _) = k.dims4()?;
    let rows = heads / kv_heads * t;
    let dev = cuda_device(q)?;
    let stream = dev.cuda_stream();
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let mut syncs = Vec::new();
    let p_q = dptr::<T>(&qs, ql, &stream, &mut syncs)?;
    let p_k = dptr::<T>(&ks, kl, &stream, &mut syncs)?;
    let p_v = dptr::<T>(&vs, vl, &stream, &mut syncs)?;
    if !aligned(&[p_q, p_k, p_v]) {
        return Ok(None);
    }
    let (out, p_out) = output::<T>(dev, &(b, t, heads * d).into())?;
    let row_blocks = rows.div_ceil(BLOCK_ROWS);
    let blocks = row_blocks * b * kv_heads;
    let min_tiles = if build.split { split_min(blocks, sm_count(dev)?, start + t) } else { None };
    let split = min_tiles.is_some();
    let entry = match (split, build.three_blocks) {
        (true, _) => "_split",
        (false, true) => "_b3",
        (false, false) => "",
    };
    let func = function(dev, &FLASH, &format!("flash_attention_{}_d{d}{entry}", suffix(q.dtype())?))?;
    let cfg = LaunchConfig {
        grid_dim: ((row_blocks * if split { 2 } else { 1 }) as u32, (b * kv_heads) as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let (ri, ti, si) = (rows as i32, t as i32, start as i32);
    let (stride, kvh) = ((cap * d) as i64, kv_heads as i32);
    let scale_log2 = scale * std::f32::consts::LOG2_E;
    let mut builder = stream.launch_builder(&func);
    builder.arg(&p_q).arg(&p_k).arg(&p_v).arg(&p_out).arg(&ri).arg(&ti).arg(&si).arg(&stride).arg(&kvh);
    builder.arg(&scale_log2);
    let split_tiles = min_tiles.unwrap_or(0) as i32;
    let scratch = if split { Some(split_scratch(dev, q.device(), blocks, d)?) } else { None };
    if let Some((_, _, p_part, p_counts)) = &scratch {
        builder.arg(p_part).arg(p_counts).arg(&split_tiles);
    }
    // SAFETY: the arguments match flash_attention's (and the _split entry's scratch, sized for every
    // row block's two slots and count); q holds b·kv_heads·rows·d elements, k and v
    // b·kv_heads·cap·d of which the kernel reads the first start + t positions of each head, and
    // out b·t·heads·d, each written once.
    unsafe { builder.launch(cfg) }.w()?;
    drop(syncs);
    Ok(Some(out))
}

/// The split's scratch: two slots of 64 rows × (d + 2) floats a row block (each half's unnormalised
/// rows, maxima and sums), and one zeroed count a row block; the tensors keep them alive through
/// the launch.
fn split_scratch(dev: &CudaDevice, device: &Device, blocks: usize, d: usize) -> Result<(Tensor, Tensor, u64, u64)> {
    let (part, p_part) = output::<f32>(dev, &(blocks * 2 * BLOCK_ROWS * (d + 2)).into())?;
    let counts = Tensor::zeros(blocks, DType::U32, device)?;
    let p_counts = {
        let (s, l) = counts.storage_and_layout();
        let stream = dev.cuda_stream();
        let mut syncs = Vec::new();
        let p = dptr::<u32>(&s, l, &stream, &mut syncs)?;
        drop(syncs);
        p
    };
    Ok((part, counts, p_part, p_counts))
}
