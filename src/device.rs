//! `--device` and `--dtype` parsing, with clear errors for builds without CUDA.

use crate::error::{Error, Result};
use candle_core::{DType, Device};

/// Runs `f` on a rayon worker thread (16 MB stack), or on this thread where no pool can be built.
/// A parallel loop started from outside the pool parks the caller and wakes the workers through a
/// futex every time; a CPU decode step starts hundreds of them, and that hand-off cost about a fifth
/// of the step. The binary runs every command this way; whatever times the CPU should too.
pub fn on_worker<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    match rayon::ThreadPoolBuilder::new().stack_size(16 << 20).build() {
        Ok(pool) => pool.install(f),
        Err(_) => f(),
    }
}

/// The device named by `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let s = s.trim();
    if s == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match s.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::input(format!("invalid device `{s}` (expected cpu, cuda or cuda:N)")))?,
        None => return Err(Error::input(format!("invalid device `{s}` (expected cpu, cuda or cuda:N)"))),
    };
    cuda_device(ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    let dev = Device::new_cuda(ordinal).map_err(|e| {
        Error::input(format!("cuda:{ordinal}: cannot open the GPU: {}", crate::error::one_line(&e.to_string())))
    })?;
    if let Device::Cuda(c) = &dev {
        // SAFETY: minilab runs everything on the device's one stream, whose order alone keeps uses
        // and frees apart; the two events cudarc would create for every allocation are pure host
        // cost on a decode step's ~300 small tensors.
        unsafe { c.disable_event_tracking() };
    }
    Ok(dev)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> Result<Device> {
    Err(Error::input("built without CUDA support: rebuild with --features cuda"))
}

/// The compute dtype named by `f32`, `f16` or `bf16`; the default depends on the device.
pub fn parse_dtype(s: Option<&str>, device: &Device) -> Result<DType> {
    match s.map(str::trim) {
        None => Ok(if device.is_cpu() { DType::F32 } else { DType::BF16 }),
        Some("f32") => Ok(DType::F32),
        Some("f16") => Ok(DType::F16),
        Some("bf16") => Ok(DType::BF16),
        Some(other) => Err(Error::input(format!("invalid dtype `{other}` (expected f32, f16 or bf16)"))),
    }
}

/// A short name for reports: `cpu` or `cuda:N`.
pub fn device_name(d: &Device) -> String {
    match d.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        other => format!("{other:?}"),
    }
}

/// What the device is, for keys that must not match another machine's: `cpu`, or the GPU's
/// model name with its ordinal (`cuda:0 NVIDIA H200`).
pub fn hardware_name(d: &Device) -> String {
    match d {
        #[cfg(feature = "cuda")]
        Device::Cuda(c) => match c.cuda_stream().context().name() {
            Ok(name) => format!("{} {name}", device_name(d)),
            Err(_) => device_name(d),
        },
        _ => device_name(d),
    }
}

/// Waits for queued device work so a clock read measures finished work.
pub fn sync(d: &Device) -> Result<()> {
    d.synchronize().map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_devices_are_input_errors() {
        assert!(parse_device("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cuda7"] {
            assert_eq!(parse_device(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        #[cfg(not(feature = "cuda"))]
        assert!(parse_device("cuda").unwrap_err().to_string().contains("rebuild with --features cuda"));
        assert_eq!(parse_dtype(Some("f8"), &Device::Cpu).unwrap_err().exit_code(), 2);
    }
}
