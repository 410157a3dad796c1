//! Launches of the decode-step kernels, optionally with programmatic dependent launch (PDL). A
//! decode step is a chain of some 250 kernels of a few µs each, so each kernel's launch latency
//! weighs as much as its bytes. With PDL a kernel may start while the previous one finishes and wait
//! (common.cuh's `pdl_wait`) for its results; the attribute is captured into CUDA graphs as a
//! programmatic edge. Measured on the H200 (BENCHMARKS.md, issue 11 session 6) it did not pay: a
//! step's linears took 0.98× (bf16) to 1.12× (nf4) the plain launches' time, and minilab's tg128
//! moved by −1.2 % to +0.4 %; so it is off unless `MINILAB_PDL=1`.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::cuda_backend::cudarc::driver::{sys, CudaFunction, CudaModule, LaunchConfig};
use candle_core::cuda_backend::cudarc::nvrtc::Ptx;
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::Result;

/// One of minilab's kernel modules, as build.rs compiled it: the machine code (SASS) for the GPU the
/// build targets, and the PTX it came from.
pub(crate) struct Module {
    pub name: &'static str,
    pub ptx: &'static str,
    pub cubin: &'static [u8],
}

/// A kernel of one of minilab's modules: its name and its module.
pub(crate) struct Func<'a> {
    pub name: &'a str,
    pub module: &'static Module,
}

/// `name` of `module`, whose image is loaded once a process and device. The SASS first: the driver
/// would compile the PTX at load, as ptxas does (linear.ptx, 15.6 MB: 42 s on a 2-core Xeon), on
/// every machine whose JIT cache does not hold it yet (a fresh node, a container). The PTX where the
/// SASS does not load (a GPU newer than the one built for).
pub(crate) fn function(dev: &CudaDevice, module: &'static Module, name: &str) -> Result<CudaFunction> {
    type Loaded = Mutex<HashMap<(usize, &'static str), Arc<CudaModule>>>;
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    let ctx = dev.cuda_stream().context().clone();
    let key = (ctx.ordinal(), module.name);
    let loaded = LOADED.get_or_init(Loaded::default);
    let known = loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
    let m = match known {
        Some(m) => m,
        None => {
            let m = match ctx.load_module(Ptx::from_binary(module.cubin.to_vec())) {
                Ok(m) => m,
                Err(e) => {
                    tracing::info!("{}: the build's SASS does not load here ({e}); compiling its PTX", module.name);
                    ctx.load_module(Ptx::from_src(module.ptx)).w()?
                }
            };
            loaded.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_insert(m).clone()
        }
    };
    m.load_function(name).w()
}

/// Whether kernels launch with PDL: with `MINILAB_PDL=1`, on compute capability 9.0 and later (where
/// the kernels' wait is compiled in).
pub(crate) fn pdl_enabled(dev: &CudaDevice) -> bool {
    use sys::CUdevice_attribute_enum as Attr;
    // minilab drives one GPU a process
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| {
        let major = dev.cuda_stream().context().attribute(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
        std::env::var("MINILAB_PDL").as_deref() == Ok("1") && major.is_ok_and(|m| m >= 9)
    })
}

/// The GPU's SMs, asked of the driver once: minilab drives one GPU a process.
pub(crate) fn sm_count(dev: &CudaDevice) -> Result<usize> {
    use sys::CUdevice_attribute_enum as Attr;
    static SMS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&sms) = SMS.get() {
        return Ok(sms);
    }
    let sms = dev.cuda_stream().context().attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).w()?;
    Ok(*SMS.get_or_init(|| usize::try_from(sms).unwrap_or(1).max(1)))
}

/// The most blocks of `kernel` with `cfg`'s block size and shared memory that the device holds at
/// once: its occupancy per SM times the SMs (at least one block). Asked of the driver once per
/// kernel and shape of block: minilab drives one GPU a process, and a decode step is first run
/// eagerly before its capture, so no query runs while a graph is captured.
pub(crate) fn resident_blocks(dev: &CudaDevice, kernel: &Func<'_>, cfg: &LaunchConfig) -> Result<u32> {
    type Known = Mutex<HashMap<(String, u32, u32), u32>>;
    static KNOWN: OnceLock<Known> = OnceLock::new();
    let key = (kernel.name.to_string(), cfg.block_dim.0, cfg.shared_mem_bytes);
    let known = KNOWN.get_or_init(Known::default);
    if let Some(&blocks) = known.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(blocks);
    }
    let func = function(dev, kernel.module, kernel.name)?;
    let per_sm = func
        .occupancy_max_active_blocks_per_multiprocessor(cfg.block_dim.0, cfg.shared_mem_bytes as usize, None)
        .w()?;
    let blocks = per_sm.max(1).saturating_mul(u32::try_from(sm_count(dev)?).unwrap_or(u32::MAX));
    known.lock().unwrap_or_else(|e| e.into_inner()).insert(key, blocks);
    Ok(blocks)
}

/// The argument pointer the driver takes for one kernel parameter.
pub(crate) fn arg<T>(value: &T) -> *mut c_void {
    value as *const T as *mut c_void
}

/// Launches `kernel` on the device's stream, with PDL where [`pdl_enabled`].
///
/// # Safety
/// `args` must point, in order, at live values whose types match the kernel's parameters, and every
/// device address among them must cover what the kernel reads and writes for `cfg`.
pub(crate) unsafe fn launch(
    dev: &CudaDevice,
    kernel: &Func<'_>,
    cfg: LaunchConfig,
    args: &mut [*mut c_void],
) -> Result<()> {
    let func = function(dev, kernel.module, kernel.name)?;
    let stream = dev.cuda_stream();
    stream.context().bind_to_thread().w()?;
    // SAFETY: a zeroed attribute value is valid plain data; the field set is the one the id names.
    let mut attr: sys::CUlaunchAttribute = unsafe { std::mem::zeroed() };
    attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attr.value.programmaticStreamSerializationAllowed = 1;
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: u32::from(pdl_enabled(dev)),
    };
    // SAFETY: the caller vouches for the arguments; `config` and `attr` outlive the call.
    unsafe { sys::cuLaunchKernelEx(&config, func.cu_function(), args.as_mut_ptr(), std::ptr::null_mut()) }.result().w()
}
