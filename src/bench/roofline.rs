//! The memory-bandwidth ceiling of decode, measured on the same device in the same run.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

/// Copy bandwidth in bytes/s (bytes read + written), median of several copies of a buffer far
/// larger than the caches.
pub fn measure_bandwidth(device: &Device) -> Result<f64> {
    let n: usize = if device.is_cpu() { 64 << 20 } else { 512 << 20 }; // f32 elements: 256 MB / 2 GB
    let src = Tensor::ones(n, DType::F32, device)?;
    let mut samples = Vec::new();
    for i in 0..7 {
        crate::device::sync(device)?;
        let t = Instant::now();
        let dst = src.copy()?;
        crate::device::sync(device)?;
        let dt = t.elapsed().as_secs_f64();
        drop(dst);
        if i > 1 {
            samples.push(2.0 * (n * 4) as f64 / dt);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// Bytes decode must read per token at `depth` cached tokens: every linear weight, the norms, one
/// embedding row, and the K/V cache.
pub fn bytes_per_token(linear_bytes: u64, kv_bytes_per_token: u64, depth: usize) -> u64 {
    linear_bytes + kv_bytes_per_token * depth as u64
}

/// Decode tokens/s as a percentage of `bandwidth ÷ bytes_per_token`.
pub fn roofline_pct(tokens_per_s: f64, bandwidth: f64, bytes_per_token: u64) -> f64 {
    100.0 * tokens_per_s * bytes_per_token as f64 / bandwidth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roofline_arithmetic() {
        // 1 GB/token at 1 TB/s caps at 1000 tok/s; 500 tok/s is 50 %.
        assert!((roofline_pct(500.0, 1e12, 1_000_000_000) - 50.0).abs() < 1e-9);
        assert_eq!(bytes_per_token(100, 10, 5), 150);
    }

    #[test]
    fn cpu_bandwidth_is_plausible() {
        let bw = measure_bandwidth(&Device::Cpu).unwrap();
        assert!(bw > 1e8 && bw < 1e13, "{bw}");
    }
}
