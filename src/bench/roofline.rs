//! The ceilings a bench is read against, measured on the same device in the same run: memory
//! bandwidth for decode, dense matmul throughput for prefill.

use crate::error::Result;
use crate::model::LlamaConfig;
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

/// Dense matmul throughput in FLOP/s in `dtype` (the compute dtype): the median of square products
/// large enough to fill the device (8192 on a GPU, 1024 on the CPU), after two warm-ups, on
/// random data.
pub fn measure_matmul_peak(device: &Device, dtype: DType) -> Result<f64> {
    let (n, reps) = if device.is_cpu() { (1024, 5) } else { (8192, 10) };
    let a = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), device)?.to_dtype(dtype)?;
    let mut samples = Vec::new();
    for i in 0..reps + 2 {
        crate::device::sync(device)?;
        let t = Instant::now();
        let c = a.matmul(&b)?;
        crate::device::sync(device)?;
        let s = t.elapsed().as_secs_f64();
        drop(c);
        if i > 1 {
            samples.push(2.0 * (n as f64).powi(3) / s);
        }
    }
    Ok(median(samples))
}

/// FLOPs of one `n`-token prompt forward from an empty cache as minilab runs it for ppN: every
/// linear over all `n` positions, the head over the last one ([`crate::model::Model::forward_last`]),
/// and the attention's two matmuls over the whole `n × n` scores (the causal mask applies after them).
/// Norms, RoPE and the softmax are left out.
pub fn prefill_flops(cfg: &LlamaConfig, n: usize) -> f64 {
    let (h, n) = (cfg.hidden_size as f64, n as f64);
    let linear = cfg.block_linear_params() as f64;
    // q·kᵀ and scores·v: 2·n·n·head_dim each, for every query head
    let attention = 4.0 * n * n * (cfg.num_attention_heads * cfg.head_dim) as f64;
    cfg.num_hidden_layers as f64 * (2.0 * n * linear + attention) + 2.0 * h * cfg.vocab_size as f64
}

/// Prefill at `tokens_per_s` on `n`-token prompts as a percentage of the matmul `peak`.
pub fn compute_pct(tokens_per_s: f64, flops_per_prompt: f64, n: usize, peak: f64) -> f64 {
    100.0 * tokens_per_s / n as f64 * flops_per_prompt / peak
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
    fn prefill_flops_count_linears_head_and_attention() {
        let cfg = LlamaConfig::preset("tiny").expect("tiny preset");
        let (h, i, l, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size);
        let (q, kv) = (cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim);
        // one token: 2 FLOPs a weight of every linear (q, k, v, o, gate, up, down, head), and the
        // attention of one query against one key (4 · q)
        let weights = l * (h * q + 2 * h * kv + q * h + 3 * h * i) + v * h;
        assert_eq!(prefill_flops(&cfg, 1), (2 * weights + 4 * l * q) as f64);
        // the block linears grow with n, the attention with n², the head stays at one position
        let head = (2 * v * h) as f64;
        let linear = prefill_flops(&cfg, 1) - (4 * l * q) as f64 - head;
        assert_eq!(prefill_flops(&cfg, 8), 8.0 * linear + (4 * l * q * 64) as f64 + head);
        // 1 TFLOP a 512-token prompt at 1000 tokens/s on a 4 TFLOP/s peak: 50 %
        assert!((compute_pct(1000.0, 1e12, 512, 4e12) - 100.0 * 1000.0 / 512.0 * 1e12 / 4e12).abs() < 1e-9);
    }

    #[test]
    fn cpu_matmul_peak_is_plausible() {
        let peak = measure_matmul_peak(&Device::Cpu, DType::F32).unwrap();
        assert!(peak > 1e8 && peak < 1e14, "{peak}");
    }

    #[test]
    fn cpu_bandwidth_is_plausible() {
        let bw = measure_bandwidth(&Device::Cpu).unwrap();
        assert!(bw > 1e8 && bw < 1e13, "{bw}");
    }
}
