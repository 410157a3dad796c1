//! The memory-bandwidth ceiling of decode, measured on the same device in the same run.

use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

/// Copy bandwidth in bytes/s (bytes read + written), median of several copies of a buffer far
/// larger than the caches. The destination is allocated once: timing fresh allocations would
/// measure the allocator (on CUDA, mapping pages for a stream-ordered pool), not the memory.
pub fn measure_bandwidth(device: &Device) -> Result<f64> {
    if device.is_cpu() {
        return Ok(host_bandwidth());
    }
    #[cfg(feature = "cuda")]
    if let Device::Cuda(d) = device {
        return cuda_bandwidth(d);
    }
    let n: usize = 512 << 20; // f32 elements: 2 GiB
    let src = Tensor::ones(n, DType::F32, device)?;
    let dst = Tensor::zeros(n, DType::F32, device)?;
    let mut samples = Vec::new();
    for i in 0..12 {
        crate::device::sync(device)?;
        let t = Instant::now();
        dst.slice_set(&src, 0, 0)?;
        crate::device::sync(device)?;
        if i > 1 {
            samples.push(2.0 * (n * 4) as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(median(samples))
}

/// Device-to-device `cudaMemcpy` bandwidth, the ceiling a copy engine reaches (candle's copy
/// kernels are slower, which would flatter the roofline).
#[cfg(feature = "cuda")]
fn cuda_bandwidth(d: &candle_core::CudaDevice) -> Result<f64> {
    let err = |e: &dyn std::fmt::Debug| crate::error::Error::Runtime(format!("bandwidth measurement: {e:?}"));
    let stream = d.cuda_stream();
    let n: usize = 512 << 20; // f32 elements: 2 GiB
    let src = stream.alloc_zeros::<f32>(n).map_err(|e| err(&e))?;
    let mut dst = stream.alloc_zeros::<f32>(n).map_err(|e| err(&e))?;
    let mut samples = Vec::new();
    for i in 0..12 {
        stream.synchronize().map_err(|e| err(&e))?;
        let t = Instant::now();
        stream.memcpy_dtod(&src, &mut dst).map_err(|e| err(&e))?;
        stream.synchronize().map_err(|e| err(&e))?;
        if i > 1 {
            samples.push(2.0 * (n * 4) as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(median(samples))
}

/// Host memory bandwidth with every core copying its own chunk (one thread cannot saturate DRAM).
fn host_bandwidth() -> f64 {
    use rayon::prelude::*;
    let n: usize = 64 << 20; // f32 elements: 256 MiB
    let src = vec![1f32; n];
    let mut dst = vec![0f32; n];
    let chunk = n / rayon::current_num_threads().max(1) + 1;
    let mut samples = Vec::new();
    for i in 0..7 {
        let t = Instant::now();
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
        std::hint::black_box(&dst);
        if i > 1 {
            samples.push(2.0 * (n * 4) as f64 / t.elapsed().as_secs_f64());
        }
    }
    median(samples)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
