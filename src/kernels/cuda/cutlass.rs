//! Launches of the `cutlass` feature's prefill GEMMs (`cutlass/gemms.cuh`): `xs[…, k]·Wᵀ` for an
//! int8 or NF4 weight `[n, k]` through CUTLASS's sm90 mixed-input GEMM, which converts the stored
//! codes in registers and feeds them to wgmma, so the weight crosses HBM once, as stored, and the
//! product runs on Hopper's fastest tensor-core path. CUTLASS's host code (`cutlass/params.cu`,
//! linked as a static library) builds the kernel's Params; the kernel (`cutlass/kernels.cu`, PTX) is
//! launched here with them. Each weight comes out as the shipped dequantize kernels write it, bit for
//! bit (see gemms.cuh), so the product differs from the shipped way's only in the order of its sums.

use std::ffi::{c_int, c_uint, c_ulong, c_void, CStr};

use candle_core::cuda_backend::cudarc::driver::sys::{self, CUfunction_attribute_enum};
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{DType, Result, Storage, Tensor};
use half::bf16;

use super::decode::{cuda_device, dptr, output};
use super::launch::{function, Module};
use super::{part_pointers, GemvPart};
use crate::kernels::params::Format;

/// kernels.cu, built for sm_90a.
static CUTLASS: Module = Module {
    name: "minilab_cutlass",
    ptx: include_str!(concat!(env!("OUT_DIR"), "/cutlass.ptx")),
    cubin: include_bytes!(concat!(env!("OUT_DIR"), "/cutlass.cubin")),
};
/// Room for a kernel's Params (2304 bytes for these GEMMs; a kernel argument may take 4 KB).
const PARAMS_CAP: usize = 4096;

/// A kernel's Params as bytes, aligned as its TMA descriptors want (64 bytes).
#[repr(C, align(64))]
struct ParamsBlob([u8; PARAMS_CAP]);

// SAFETY: plain bytes, passed by address as the kernel's one argument; the driver copies the
// kernel's own parameter size of them, which params.cu checked fits PARAMS_CAP.
unsafe impl DeviceRepr for ParamsBlob {}

extern "C" {
    /// params.cu: kind 0 int8, 1 NF4; tile as `CutlassTile::name_and_index`; 0 on success (see there
    /// for the others).
    fn minilab_mixed_params(
        kind: c_int,
        tile: c_int,
        n: c_int,
        m: c_int,
        k: c_int,
        wq: *const c_void,
        scales: *const c_void,
        xs: *const c_void,
        ys: *mut c_void,
        sms: c_int,
        out: *mut c_void,
        cap: c_ulong,
        dims: *mut c_uint,
    ) -> c_int;
    /// driver.cpp: the driver entry points its forwarders call.
    fn minilab_mixed_set_driver(encode: *mut c_void, ctx_get_device: *mut c_void, device_get_attribute: *mut c_void);
}

/// The driver's entry point `name` (for CUDA 12.0's signature), from the driver cudarc loaded.
fn entry_point(name: &CStr) -> Result<*mut c_void> {
    let mut f = std::ptr::null_mut();
    // SAFETY: name is NUL-terminated, f receives the address; the status argument is optional.
    unsafe { sys::cuGetProcAddress_v2(name.as_ptr(), &mut f, 12000, 0, std::ptr::null_mut()) }.result().w()?;
    if f.is_null() {
        candle_core::bail!("the CUDA driver has no {name:?}")
    }
    Ok(f)
}

/// Whether the GEMMs run on `dev` (compute capability 9: they are built for sm_90a); the first time
/// it says yes it hands driver.cpp its entry points. Asked of the driver once a process: minilab
/// drives one GPU a process (as `launch::sm_count` assumes).
fn ready(dev: &candle_core::CudaDevice) -> Result<bool> {
    use sys::CUdevice_attribute_enum as Attr;
    static READY: std::sync::OnceLock<std::result::Result<bool, String>> = std::sync::OnceLock::new();
    let ready = READY.get_or_init(|| {
        let set = || -> Result<bool> {
            let major =
                dev.cuda_stream().context().attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR).w()?;
            if major != 9 {
                return Ok(false);
            }
            let encode = entry_point(c"cuTensorMapEncodeTiled")?;
            let (device, attribute) = (entry_point(c"cuCtxGetDevice")?, entry_point(c"cuDeviceGetAttribute")?);
            // SAFETY: the three are the driver functions whose C signatures driver.cpp declares.
            unsafe { minilab_mixed_set_driver(encode, device, attribute) };
            Ok(true)
        };
        set().map_err(|e| e.to_string())
    });
    ready.clone().map_err(candle_core::Error::Msg)
}

/// `xs[…, k]·Wᵀ` → `[…, n]` for a weight stored as `a` (int8 codes q + 128 `[n, k]` / NF4 bytes
/// `[n·k/2]`) and `b` (f32 scales `[n]` / absmax `[n·k/64]`); `None` where the GEMM does not apply
/// (not a bf16 model, not a Hopper GPU, a shape CUTLASS refuses). A weight of the wrong size or
/// alignment is an error, as for the decode GEMVs.
pub(crate) fn gemm(
    format: Format,
    xs: &Tensor,
    (a, b): (&Tensor, &Tensor),
    (n, k): (usize, usize),
) -> Result<Option<Tensor>> {
    if xs.dtype() != DType::BF16 || !xs.is_contiguous() || xs.dims().last() != Some(&k) || format == Format::Dense {
        return Ok(None);
    }
    let m = xs.elem_count() / k;
    if m.max(n).max(k) > i32::MAX as usize || (format == Format::Nf4 && !k.is_multiple_of(64)) {
        return Ok(None);
    }
    if !ready(cuda_device(xs)?)? {
        return Ok(None);
    }
    // NF4: the absmax as CUTLASS lays scales out, [k/64, n] with n contiguous; int8's row scales
    // are already [n]
    let scales = match format {
        Format::Int8 => b.clone(),
        _ => b.reshape((n, k / 64))?.t()?.contiguous()?,
    };
    launch(format, xs, (a, b, &scales), (m, n, k))
}

/// The launch itself: `scales` are `b` as CUTLASS reads them (NF4: transposed).
fn launch(
    format: Format,
    xs: &Tensor,
    (a, b, scales): (&Tensor, &Tensor, &Tensor),
    (m, n, k): (usize, usize, usize),
) -> Result<Option<Tensor>> {
    let dev = cuda_device(xs)?;
    let stream = dev.cuda_stream();
    let (sx, lx) = xs.storage_and_layout();
    let (ss, ls) = scales.storage_and_layout();
    let (sa, la) = a.storage_and_layout();
    let (sb, lb) = b.storage_and_layout();
    let mut syncs = Vec::new();
    let p_xs = dptr::<bf16>(&sx, lx, &stream, &mut syncs)?;
    let p_scales = dptr::<f32>(&ss, ls, &stream, &mut syncs)?;
    let (Storage::Cuda(ca), Storage::Cuda(cb)) = (&*sa, &*sb) else {
        candle_core::bail!("cutlass GEMM: the weight is not on the GPU")
    };
    let part = GemvPart { format, a: (ca, la), b: Some((cb, lb)), n };
    let (p_a, _) = part_pointers::<bf16>(&part, k, &stream, &mut syncs)?;
    let mut dims = xs.dims().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    let (ys, p_ys) = output::<bf16>(dev, &dims.into())?;
    let (kind, format_name) = match format {
        Format::Int8 => (0, "int8"),
        _ => (1, "nf4"),
    };
    let sms = super::launch::sm_count(dev)?;
    let (tile_name, tile) = crate::kernels::qgemm::cutlass_tile(m, n, sms).name_and_index();
    let (blob, shape) = match encode_params(kind, tile, (m, n, k), [p_a, p_scales, p_xs, p_ys], sms) {
        Ok(params) => params,
        Err(rc) => {
            tracing::debug!(
                "cutlass GEMM ({tile_name}) refused a {n}x{k} weight at {m} rows (code {rc}): the shipped prefill runs"
            );
            return Ok(None);
        }
    };
    let [gx, gy, gz, threads, shared, _] = shape;
    let func = function(dev, &CUTLASS, &format!("minilab_mixed_{format_name}_{tile_name}"))?;
    func.set_attribute(CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared as i32)
        .w()?;
    let cfg = LaunchConfig { grid_dim: (gx, gy, gz), block_dim: (threads, 1, 1), shared_mem_bytes: shared };
    let mut builder = stream.launch_builder(&func);
    builder.arg(&blob);
    // SAFETY: the kernel's one argument is its Params, written by CUTLASS's host code for these
    // buffers: xs m·k bf16, the weight as part_pointers checked it, the scales (NF4's
    // transposed) alive in `scales` until the launch is queued, ys m·n bf16.
    unsafe { builder.launch(cfg) }.w()?;
    drop(syncs);
    Ok(Some(ys))
}

/// CUTLASS's host code writes the kernel's Params for weight kind `kind` (0 int8, 1 NF4) and tile
/// `tile` over the device addresses [weight, scales, xs, ys]: the blob and the launch shape
/// (grid x, y, z, threads, shared bytes), or its nonzero code where it refuses the problem.
fn encode_params(
    kind: c_int,
    tile: c_int,
    (m, n, k): (usize, usize, usize),
    [p_a, p_scales, p_xs, p_ys]: [u64; 4],
    sms: usize,
) -> std::result::Result<(ParamsBlob, [c_uint; 6]), c_int> {
    let mut blob = ParamsBlob([0; PARAMS_CAP]);
    let mut shape = [0 as c_uint; 6];
    let ptr = |p: u64| p as usize as *const c_void;
    // SAFETY: the pointers are device addresses that the host code only encodes into the Params (it
    // never reads through them); blob and shape are writable and as large as declared.
    let rc = unsafe {
        minilab_mixed_params(
            kind,
            tile,
            n as c_int,
            m as c_int,
            k as c_int,
            ptr(p_a),
            ptr(p_scales),
            ptr(p_xs),
            ptr(p_ys) as *mut c_void,
            sms as c_int,
            blob.0.as_mut_ptr().cast(),
            PARAMS_CAP as c_ulong,
            shape.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(rc);
    }
    Ok((blob, shape))
}
