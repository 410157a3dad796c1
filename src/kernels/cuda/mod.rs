//! CUDA launches of the kernels in `linear.cu`: the decode GEMVs of `gemv.cuh` (several weights
//! of one format in one launch, or of several in `gemv_mixed.cuh`'s), one-pass dequantize for
//! prefill (whose product then goes to cuBLAS through candle's matmul); `decode` launches the small
//! fused ops of a decode step.

use super::grid::{self, Grid};
use super::params::Format;
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg, SyncOnDrop,
};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};
use gemv_args::{parts_header, PartArg};
pub(crate) use gemv_args::{Epilogue, NormArg, NormWay, RopeArg, StatsOut};
use half::{bf16, f16};

pub(crate) mod attention;
#[cfg(feature = "cutlass")]
pub(crate) mod cutlass;
pub(crate) mod decode;
pub(crate) mod flash;
mod gemv_args;
mod launch;
pub(crate) mod prefill;
pub(crate) mod qgemm;

/// linear.cu: the GEMVs, the dequantize kernels and minilab's own GEMM.
static LINEAR: launch::Module = launch::Module {
    name: "minilab_linear",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/linear.ptx")),
    cubin: include_bytes!(concat!(env!("OUT_DIR"), "/linear.cubin")),
};
/// Warps of a GEMV block (128 threads in linear.cu's launch bounds).
const WARPS_PER_BLOCK: usize = 4;

/// The element range of a contiguous tensor in its storage.
fn range(l: &Layout) -> Result<std::ops::Range<usize>> {
    match l.contiguous_offsets() {
        Some((s, e)) => Ok(s..e),
        None => candle_core::bail!("CUDA kernel: tensor not contiguous"),
    }
}

/// The kernel-name suffix of a float dtype.
fn suffix(dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        d => candle_core::bail!("no CUDA kernel for {d:?} tensors"),
    })
}

/// The device address and byte length of a contiguous tensor on the GPU (its memory stays owned
/// by the tensor: the address holds while the tensor lives).
pub(crate) fn device_range(t: &candle_core::Tensor) -> Result<(u64, u64)> {
    let bytes = (t.elem_count() * t.dtype().size_in_bytes()) as u64;
    decode::with_addresses(&[t], |p| Ok((p[0], bytes)))
}

/// One weight of a GEMV launch: its format, stored tensor(s) on the device and its output rows.
/// `a`: dense weights (xs' dtype), int8 codes or NF4 packed bytes; `b`: int8 scales or NF4 absmax.
pub(crate) struct GemvPart<'a> {
    pub format: Format,
    pub a: (&'a CudaStorage, &'a Layout),
    pub b: Option<(&'a CudaStorage, &'a Layout)>,
    pub n: usize,
}

/// The format the parts share, or `None` where they hold several (a launch of gemv_mixed.cuh).
fn shared_format(parts: &[GemvPart<'_>]) -> Option<Format> {
    let first = parts.first()?.format;
    parts.iter().all(|p| p.format == first).then_some(first)
}

/// Whether weights of several formats can share one launch of `m` rows of xs: the gemv_mx_ kernels
/// take one row of 16-bit xs.
pub(crate) fn mixed_fits(dtype: DType, m: usize) -> bool {
    m == 1 && sixteen_bit(dtype)
}

/// Shared memory a block may bring for the normalized xs (48 KB without opting in, less the NF4
/// table and the reduction's).
const NORM_SHARED_MAX: usize = 40 << 10;

/// The most shared memory a normalized xs may take beside a gemv_st_ kernel's stages (20.5 KB with
/// the NF4 table): 48 KB in all without opting in.
const STAGED_NORM_MAX: usize = 16 << 10;

/// Whether a launch takes a gemv_st_ kernel: staging asked for, one row of 16-bit xs, and room for
/// the normalized xs beside the stages.
fn staged_fits(spec: &LaunchSpec, m: usize) -> bool {
    crate::kernels::staging::staged()
        && m == 1
        && matches!(spec.dtype, DType::F16 | DType::BF16)
        && spec.norm.is_none_or(|_| spec.k * spec.dtype.size_in_bytes() <= STAGED_NORM_MAX)
}

/// Whether a launch of `m` rows of `k` elements in `dtype` can normalize them first.
pub(crate) fn norm_fits(dtype: DType, m: usize, k: usize) -> bool {
    m == 1 && k * dtype.size_in_bytes() <= NORM_SHARED_MAX
}

/// Rows of xs the kernel is built for and output rows a warp takes (linear.cu's GEMVS list):
/// measured best on the H200 in bench/kernels/gemv_bench.cu.
/// SiluMul and Rope need two rows a warp (Rope exactly two).
fn gemv_variant(format: Format, dtype: DType, m: usize, n_max: usize, epi: Epilogue) -> (usize, usize) {
    if dtype == DType::F32 {
        return (8, if epi.by_rows() { 1 } else { 2 });
    }
    let mm = m.next_power_of_two().max(1);
    let r = match (format, mm) {
        (Format::Nf4, 1) if n_max >= 8192 && !matches!(epi, Epilogue::Rope(_)) => 4,
        (Format::Dense, 4 | 8) => 1,
        _ => 2,
    };
    (mm, r)
}

/// Whether a launch of `m` rows of xs can write `epi` (anything but Plain needs a kernel that takes
/// two rows a warp).
pub(crate) fn epilogue_fuses(format: Format, dtype: DType, m: usize, epi: Epilogue) -> bool {
    (1..=8).contains(&m) && (epi.by_rows() || gemv_variant(format, dtype, m, 0, epi).1 >= 2)
}

/// The parts' shapes `epi` takes: two of one shape for SiluMul; q, k, v whose rows `d` divides
/// (k and v alike, d even) for Rope.
fn epilogue_shapes(parts: &[GemvPart<'_>], epi: Epilogue) -> bool {
    match epi {
        Epilogue::Plain => true,
        Epilogue::Residual(_) | Epilogue::ResidualStats(_) => parts.len() == 1,
        Epilogue::SiluMul => parts.len() == 2 && parts[0].n == parts[1].n,
        Epilogue::Rope(r) => {
            let d = r.d.max(0) as usize;
            parts.len() == 3
                && d >= 2
                && d.is_multiple_of(2)
                && parts[1].n == parts[2].n
                && parts.iter().all(|p| p.n.is_multiple_of(d))
        }
    }
}

/// `ys_i[m, n_i] = xs[m, k]·W_iᵀ` for up to three weights in one launch; the outputs come back as
/// one buffer, part after part, or as `epi` says: silu(gate)·up `[m, n]`, or the rotated q
/// `[m, heads·d]` (k and v then go to the caches), or res + the product. [`epilogue_fuses`] must
/// hold, and [`norm_fits`] where `norm` is given; weights of several formats need [`mixed_fits`], no
/// residual and no late norm.
pub(crate) fn gemv_parts(
    (xs, lx): (&CudaStorage, &Layout),
    parts: &[GemvPart<'_>],
    k: usize,
    epi: Epilogue,
    norm: Option<NormArg>,
) -> Result<CudaStorage> {
    match xs.dtype() {
        DType::F32 => gemv_parts_as::<f32>((xs, lx), parts, k, (epi, norm)),
        DType::F16 => gemv_parts_as::<f16>((xs, lx), parts, k, (epi, norm)),
        DType::BF16 => gemv_parts_as::<bf16>((xs, lx), parts, k, (epi, norm)),
        d => candle_core::bail!("linear kernel: no CUDA kernel for {d:?} activations"),
    }
}

/// [`gemv_parts`] at one activation type: the kernels take `const T* xs`.
fn gemv_parts_as<T: CudaDType + DeviceRepr>(
    (xs, lx): (&CudaStorage, &Layout),
    parts: &[GemvPart<'_>],
    k: usize,
    (epi, norm): (Epilogue, Option<NormArg>),
) -> Result<CudaStorage> {
    let dev = &xs.device;
    let stream = dev.cuda_stream();
    let rx = range(lx)?;
    let size = std::mem::size_of::<T>();
    if !(rx.start * size).is_multiple_of(16) {
        candle_core::bail!("linear kernel: xs is not 16-byte aligned");
    }
    let spec = LaunchSpec { format: shared_format(parts), dtype: xs.dtype(), k, epi, norm };
    let m = launch_rows(&spec, rx.len(), parts)?;
    let total: usize = match epi {
        Epilogue::Plain => parts.iter().map(|p| p.n).sum(),
        _ => parts[0].n,
    };
    // SAFETY: every element is written by the kernel (each part's m × n outputs, silu's m × n or
    // q's m × n; with Rope none at a position past the cache or the tables, which the caller
    // rules out).
    let ys = unsafe { dev.alloc::<T>(m * total)? };
    let (x_base, x_sync) = xs.as_cuda_slice::<T>()?.device_ptr(&stream);
    let x_ptr = x_base + (rx.start * size) as u64;
    let (y_ptr, y_sync) = ys.device_ptr(&stream);
    let mut arg = parts_header(parts.len(), m, k, epi, norm);
    let mut syncs = Vec::with_capacity(2 * parts.len());
    let mut offset = 0;
    for (slot, part) in arg.p.iter_mut().zip(parts) {
        let (a_ptr, b_ptr) = part_pointers::<T>(part, k, &stream, &mut syncs)?;
        let format = part.format as i32;
        *slot = PartArg { a: a_ptr, b: b_ptr, ys: y_ptr + (offset * size) as u64, n: part.n as i32, format };
        offset += m * part.n;
    }
    let (name, cfg) = launch_config(&spec, m, parts)?;
    let pf =
        crate::kernels::prefetch::current().filter(|_| m == 1 && xs.dtype() != DType::F32 && spec.format.is_some());
    let (name, grid, warp_norm) = kernel_way(&spec, m, name, pf.is_some());
    let mut cfg = cfg;
    if let Some(code) = warp_norm {
        // the warps apply the norm themselves: no shared copy of xs
        arg.norm = code;
        cfg.shared_mem_bytes = 0;
    }
    let kernel = launch::Func { name: &name, module: &LINEAR };
    if grid != Grid::Rows {
        // the kernels stride their warps over the row groups, so fewer blocks still cover them all
        cfg.grid_dim.0 = cfg.grid_dim.0.min(launch::resident_blocks(dev, &kernel, &cfg)?);
    }
    let pf_arg = pf.unwrap_or_default();
    let mut args = [launch::arg(&x_ptr), launch::arg(&arg), launch::arg(&pf_arg)];
    let args = if pf.is_some() { &mut args[..] } else { &mut args[..2] };
    // SAFETY: the arguments match the kernel's (const T* xs, gemv::Parts[, gemv::Prefetch]);
    // every pointer was checked to cover the rows the kernel reads, and the prefetched regions
    // lie in live weights (prefetch::next).
    unsafe { launch::launch(dev, &kernel, cfg, args) }?;
    drop((syncs, x_sync, y_sync));
    Ok(CudaStorage::wrap_cuda_slice(ys, dev.clone()))
}

/// The kernel a launch takes and its grid (`kernels::grid::pick`). The one-row 16-bit kernels also
/// come as gemv_pf_, which first ask L2 for the next launch's weights (kernels::prefetch, `pf`), as
/// gemv_st_, which stage them through shared memory (kernels::staging), as gemv_sm_ and gemv_sr_,
/// which stream them across row groups on a resident grid (kernels::grid), as gemv_ln_, which apply a
/// folded norm as their warps load xs, and as gemv_ns_, the stats way, which take their rows grid
/// whatever the opt-ins say (its producer's partial sums are one a block of that grid). The third
/// value is Parts' norm where the kernel's warps apply the norm (2 late, 3 stats).
fn kernel_way(spec: &LaunchSpec, m: usize, name: String, pf: bool) -> (String, Grid, Option<i32>) {
    if stats_launch(spec, m) {
        return (name.replacen("gemv_", "gemv_ns_", 1), Grid::Rows, Some(3));
    }
    // the launches of several formats come in the rows grid and the block's norm only
    let Some(format) = spec.format else { return (name, Grid::Rows, None) };
    let bits = match format {
        Format::Dense => 8 * spec.dtype.size_in_bytes(),
        Format::Int8 => 8,
        Format::Nf4 => 4,
    };
    let streams = grid::streams(m, spec.dtype.size_in_bytes(), bits, spec.k, spec.norm.is_some());
    match grid::pick(grid::current(), pf, staged_fits(spec, m), streams) {
        ("gemv_", grid) if late_norm_fits(spec, m) => (name.replacen("gemv_", "gemv_ln_", 1), grid, Some(2)),
        (family, grid) => (name.replacen("gemv_", family, 1), grid, None),
    }
}

/// Whether a launch with a folded norm takes a gemv_ln_ kernel: the late way asked for, one row of
/// 16-bit xs (the ln kernels linear.cu's GEMVS_NORM builds).
fn late_norm_fits(spec: &LaunchSpec, m: usize) -> bool {
    spec.norm.is_some_and(|n| n.way == NormWay::Late) && m == 1 && sixteen_bit(spec.dtype)
}

/// Whether a launch takes a gemv_ns_ kernel: the producer or a consumer of the stats way, one row of
/// 16-bit xs.
fn stats_launch(spec: &LaunchSpec, m: usize) -> bool {
    let consumer = spec.norm.is_some_and(|n| matches!(n.way, NormWay::Stats { .. }));
    (consumer || matches!(spec.epi, Epilogue::ResidualStats(_))) && m == 1 && sixteen_bit(spec.dtype)
}

fn sixteen_bit(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16)
}

/// Whether a residual launch of one `[n, k]` weight can write the next norm's statistics
/// ([`Epilogue::ResidualStats`]): one row of 16-bit xs, two rows a warp (the gemv_ns_ kernels' RESID
/// path).
pub(crate) fn stats_fits(format: Format, dtype: DType, m: usize, n: usize) -> bool {
    m == 1 && sixteen_bit(dtype) && gemv_variant(format, dtype, 1, n, Epilogue::Residual(0)).1 == 2
}

/// The blocks of that launch, each of which leaves one partial sum: its rows grid.
pub(crate) fn stats_blocks(format: Format, dtype: DType, n: usize) -> usize {
    let (_, r) = gemv_variant(format, dtype, 1, n, Epilogue::Residual(0));
    n.div_ceil(r).div_ceil(WARPS_PER_BLOCK)
}

/// What one GEMV launch computes, besides the addresses it reads and writes.
#[derive(Clone, Copy)]
struct LaunchSpec {
    /// The parts' format, `None` where they hold several.
    format: Option<Format>,
    dtype: DType,
    k: usize,
    epi: Epilogue,
    norm: Option<NormArg>,
}

/// The rows of xs (`len` elements of `k`) that one launch takes, after checking that `parts` and
/// `epi` (and the prologue `norm`) make one GEMV launch.
fn launch_rows(spec: &LaunchSpec, len: usize, parts: &[GemvPart<'_>]) -> Result<usize> {
    let LaunchSpec { format, dtype, k, epi, norm } = *spec;
    let m = len / k;
    if m == 0 || m > 8 || parts.is_empty() || parts.len() > 3 || len != m * k {
        candle_core::bail!("linear kernel: {m} rows and {} weights are not a GEMV launch", parts.len());
    }
    let Some(format) = format else {
        let fits = mixed_fits(dtype, m)
            && epilogue_shapes(parts, epi)
            && matches!(epi, Epilogue::Plain | Epilogue::SiluMul | Epilogue::Rope(_))
            && norm.is_none_or(|n| n.way != NormWay::Late && norm_fits(dtype, m, k));
        if !fits {
            candle_core::bail!("linear kernel: weights of several formats in a launch it does not take");
        }
        return Ok(m);
    };
    if !epilogue_shapes(parts, epi)
        || !epilogue_fuses(format, dtype, m, epi)
        || (norm.is_some() && !norm_fits(dtype, m, k))
    {
        candle_core::bail!("linear kernel: these weights do not take a fused silu·up or RoPE");
    }
    let stats_out = matches!(epi, Epilogue::ResidualStats(_));
    let stats_in = norm.is_some_and(|n| matches!(n.way, NormWay::Stats { .. }));
    if (stats_out && !stats_fits(format, dtype, m, parts[0].n)) || (stats_in && (m != 1 || !sixteen_bit(dtype))) {
        candle_core::bail!("linear kernel: the stats way takes one row of 16-bit xs");
    }
    Ok(m)
}

/// The kernel's name and grid: warps over the parts' rows as `epi` groups them, with the
/// normalized xs in shared memory when `norm` is given.
fn launch_config(spec: &LaunchSpec, m: usize, parts: &[GemvPart<'_>]) -> Result<(String, LaunchConfig)> {
    let LaunchSpec { format, dtype, k, epi, norm } = *spec;
    let (name, r) = match format {
        Some(format) => {
            let (mm, r) = gemv_variant(format, dtype, m, parts.iter().map(|p| p.n).max().unwrap_or(0), epi);
            let kind = match format {
                Format::Dense => "dense",
                Format::Int8 => "int8",
                Format::Nf4 => "nf4",
            };
            (format!("gemv_{kind}_{}_m{mm}_r{r}", suffix(dtype)?), r)
        }
        // two rows a warp, and two of gate and two of up with silu·up (gemv_mixed.cuh)
        None => (format!("gemv_mx_{}_m1", suffix(dtype)?), if matches!(epi, Epilogue::SiluMul) { 4 } else { 2 }),
    };
    let warps: usize = match epi {
        Epilogue::Plain | Epilogue::Residual(_) | Epilogue::ResidualStats(_) => {
            parts.iter().map(|p| p.n.div_ceil(r)).sum()
        }
        Epilogue::SiluMul => parts[0].n.div_ceil(r / 2),
        // a RoPE pair of q or k, or two rows of v, a warp
        Epilogue::Rope(_) => parts.iter().map(|p| p.n.div_ceil(2)).sum(),
    };
    let cfg = LaunchConfig {
        grid_dim: (warps.div_ceil(WARPS_PER_BLOCK) as u32, 1, 1),
        block_dim: (32 * WARPS_PER_BLOCK as u32, 1, 1),
        // the normalized xs
        shared_mem_bytes: if norm.is_some() { (k * dtype.size_in_bytes()) as u32 } else { 0 },
    };
    Ok((name, cfg))
}

/// Device addresses of a part's weight and scales, after checking that they hold exactly an
/// `[n, k]` weight in its format and start 16-byte aligned; their sync guards go to `syncs`.
fn part_pointers<'a, T: CudaDType + DeviceRepr + 'a>(
    part: &GemvPart<'a>,
    k: usize,
    stream: &'a CudaStream,
    syncs: &mut Vec<SyncOnDrop<'a>>,
) -> Result<(u64, u64)> {
    let (n, format) = (part.n, part.format);
    let (a, la) = part.a;
    let ra = range(la)?;
    let (a_ptr, a_bytes) = if format == Format::Dense {
        let (p, sync) = a.as_cuda_slice::<T>()?.device_ptr(stream);
        syncs.push(sync);
        let size = std::mem::size_of::<T>();
        (p + (ra.start * size) as u64, ra.len() * size)
    } else {
        let (p, sync) = a.as_cuda_slice::<u8>()?.device_ptr(stream);
        syncs.push(sync);
        (p + ra.start as u64, ra.len())
    };
    let want = match format {
        Format::Dense => n * k * std::mem::size_of::<T>(),
        Format::Int8 => n * k,
        Format::Nf4 => n * k / 2,
    };
    if a_bytes != want || !a_ptr.is_multiple_of(16) {
        candle_core::bail!(
            "linear kernel: a {n}x{k} weight holds {a_bytes} bytes (want {want}) or is not 16-byte aligned"
        );
    }
    let b_ptr = match (format, part.b) {
        (Format::Dense, _) => 0,
        (_, Some((b, lb))) => {
            let rb = range(lb)?;
            let want = if format == Format::Int8 { n } else { n * k / 64 };
            if rb.len() != want {
                candle_core::bail!("linear kernel: {} scales for a {n}x{k} weight (want {want})", rb.len());
            }
            let (p, sync) = b.as_cuda_slice::<f32>()?.device_ptr(stream);
            syncs.push(sync);
            p + (rb.start * 4) as u64
        }
        (_, None) => candle_core::bail!("linear kernel: a quantized weight needs its scales"),
    };
    Ok((a_ptr, b_ptr))
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
        let func = launch::function(dev, &LINEAR, name)?;
        let stream = dev.cuda_stream();
        let threads = (n * k).div_ceil(8);
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut builder = stream.launch_builder(&func);
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
