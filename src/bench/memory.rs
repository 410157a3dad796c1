//! Measured memory: resident-set size on the CPU (from /proc/self), free-memory deltas on CUDA.
//! These are measurements, never mixed with the weight bytes computed from a plan.

use candle_core::Device;

/// A reading of the memory the device has in use for this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemReading {
    /// CPU: resident set; CUDA: total − free on the device.
    pub used: u64,
    /// CPU: peak resident set since the last [`reset_peak`]; CUDA: same as `used` (sampled).
    pub peak: u64,
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Current memory in use on `device`.
pub fn read(device: &Device) -> MemReading {
    match device {
        Device::Cpu => {
            MemReading { used: proc_status_kb("VmRSS:").unwrap_or(0), peak: proc_status_kb("VmHWM:").unwrap_or(0) }
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let used = d.cuda_stream().context().mem_get_info().map(|(free, total)| (total - free) as u64).unwrap_or(0);
            MemReading { used, peak: used }
        }
        #[allow(unreachable_patterns)]
        _ => MemReading::default(),
    }
}

/// Resets the CPU peak (VmHWM) so the next peak covers only what follows (Linux ≥ 4.0).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Bytes free on `device` for new tensors: CUDA's free memory, or the host's available memory.
pub fn free_bytes(device: &Device) -> u64 {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d.cuda_stream().context().mem_get_info().map(|(free, _)| free as u64).unwrap_or(0),
        _ => host_available(),
    }
}

/// The host's available memory (`MemAvailable` of /proc/meminfo), or 0 when unknown.
pub fn host_available() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/meminfo") else { return 0 };
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"));
    line.and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).map_or(0, |kb| kb * 1024)
}
