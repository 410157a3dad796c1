//! `device_check cuda kernels`: every GEMV kernel against the plain path on random weights of real
//! shapes, gate/up with silu·up and q/k/v in one launch against theirs, then each format's GEMVs of
//! a Llama-3.2-3B decode step timed both ways.

use candle_core::{DType, Device, Module, Tensor};
use minilab::quant::{Precision, SwitchableLinear};
use std::time::Instant;

use super::{rel_err, worse};

/// Seconds of one forward of `layer` on `xs` (mean of 200 after 10 warm-ups).
pub(super) fn time_forward(layer: &SwitchableLinear, xs: &Tensor, dev: &Device) -> minilab::Result<f64> {
    for _ in 0..10 {
        layer.forward(xs)?;
    }
    dev.synchronize()?;
    let reps = 200;
    let t = Instant::now();
    for _ in 0..reps {
        layer.forward(xs)?;
    }
    dev.synchronize()?;
    Ok(t.elapsed().as_secs_f64() / reps as f64)
}

pub fn check_kernels(dev: &Device) -> minilab::Result<()> {
    // (out, in): SmolLM2 FFN up, Llama-3.2-3B FFN up and down, Llama-3.1-8B FFN up.
    let shapes = [(1536, 576), (8192, 3072), (3072, 8192), (14336, 4096)];
    println!("| shape | format | dtype | rows | max |fused − plain| / max |plain| |");
    println!("| --- | --- | --- | ---: | ---: |");
    let mut worst = 0f32;
    for &(n, k) in &shapes {
        let master = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?;
        for dtype in [DType::F32, DType::BF16] {
            let mut layer = SwitchableLinear::new(master.to_dtype(dtype)?, None, dev, dtype)?;
            for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
                layer.set_precision(p)?;
                for m in [1usize, 3, 8, 64] {
                    let xs = Tensor::randn(0f32, 1.0, (m, k), dev)?.to_dtype(dtype)?;
                    minilab::kernels::set_enabled(true);
                    let fused = layer.forward(&xs)?;
                    minilab::kernels::set_enabled(false);
                    let plain = layer.forward(&xs)?;
                    minilab::kernels::set_enabled(true);
                    let e = rel_err(&fused, &plain)?;
                    if dtype == DType::F32 {
                        worst = worse(worst, e);
                    }
                    println!("| {n}x{k} | {p} | {dtype:?} | {m} | {e:.2e} |");
                }
            }
        }
    }
    println!("worst f32 relative error: {worst:.2e}");
    println!();
    check_fused(dev)?;
    check_silu(dev)?;
    // Llama-3.2-3B's linears (out, in) and how many of each one decode step runs: the sum says how
    // much of a step the matmuls take; the rest of the step is everything else (launches, attention).
    let per_token = [(3072, 3072, 56), (1024, 3072, 56), (8192, 3072, 56), (3072, 8192, 28), (128256, 3072, 1)];
    println!("| shape | format | plain µs | fused µs | speed-up | fused weight GB/s |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let mut step = [(0f64, 0f64); 3];
    for &(n, k, count) in &per_token {
        let master = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?.to_dtype(DType::BF16)?;
        let mut layer = SwitchableLinear::new(master, None, dev, DType::BF16)?;
        let xs = Tensor::randn(0f32, 1.0, (1, k), dev)?.to_dtype(DType::BF16)?;
        for (i, p) in [Precision::F16, Precision::Int8, Precision::Nf4].into_iter().enumerate() {
            layer.set_precision(p)?;
            minilab::kernels::set_enabled(false);
            let plain = time_forward(&layer, &xs, dev)?;
            minilab::kernels::set_enabled(true);
            let fused = time_forward(&layer, &xs, dev)?;
            step[i].0 += plain * count as f64;
            step[i].1 += fused * count as f64;
            let gbs = layer.weight_bytes() as f64 / fused / 1e9;
            println!("| {n}x{k} | {p} | {:.1} | {:.1} | {:.2}× | {gbs:.0} |", plain * 1e6, fused * 1e6, plain / fused);
        }
    }
    for (i, p) in ["f16", "int8", "nf4"].iter().enumerate() {
        println!(
            "{p}: linears of one Llama-3.2-3B decode step: plain {:.2} ms, fused {:.2} ms (≤ {:.0} tok/s if nothing else ran)",
            step[i].0 * 1e3,
            step[i].1 * 1e3,
            1.0 / step[i].1
        );
    }
    Ok(())
}

/// Llama-3.2-3B's gate/up and silu·up in one launch (`SwitchableLinear::forward_silu_mul`) against
/// an f32 reference on the CPU from the layers' own (dequantized) weights. The launch rounds gate,
/// up and the product to the compute dtype, as the separate kernels do: in bf16 that is three
/// roundings of at most u = 2⁻⁸ relative each, plus the reference's own rounding of dequantized
/// weights to bf16, so it fails past 4u (f32: past 1e-5) or on a non-finite output. Candle's path
/// (two layers, then silu and mul, each op rounded) is measured against the same reference beside it.
fn check_silu(dev: &Device) -> minilab::Result<()> {
    println!("| gate/up + silu·up in one launch | format | dtype | rows | fused: max |Δ| / max |ref| | candle ops |");
    println!("| --- | --- | --- | ---: | ---: | ---: |");
    let mut fails = Vec::new();
    for (dtype, limit) in [(DType::F32, 1e-5), (DType::BF16, 4.0 * 2f32.powi(-8))] {
        let mut layers = [8192, 8192]
            .map(|n| Tensor::randn(0f32, 0.02, (n, 3072), &Device::Cpu)?.to_dtype(dtype))
            .into_iter()
            .map(|w| SwitchableLinear::new(w?, None, dev, dtype))
            .collect::<candle_core::Result<Vec<_>>>()?;
        for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
            for l in &mut layers {
                l.set_precision(p)?;
            }
            let ws = layers
                .iter()
                .map(|l| l.weight()?.to_device(&Device::Cpu)?.to_dtype(DType::F32))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let mut worst = 0f32;
            for m in [1usize, 3, 8] {
                let xs = Tensor::randn(0f32, 1.0, (1, m, 3072), dev)?.to_dtype(dtype)?;
                let fused = SwitchableLinear::forward_silu_mul(&layers[0], &layers[1], &xs, None)?;
                // (m, 3072) · (3072, 8192) → (m, 8192), then back to fused's (1, m, 8192)
                let x32 = xs.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.reshape((m, 3072))?;
                let gate = x32.matmul(&ws[0].t()?)?;
                let reference = (candle_nn::ops::silu(&gate)? * x32.matmul(&ws[1].t()?)?)?.reshape(fused.shape())?;
                minilab::kernels::set_enabled(false);
                let plain = (candle_nn::ops::silu(&layers[0].forward(&xs)?)? * layers[1].forward(&xs)?)?;
                minilab::kernels::set_enabled(true);
                let cpu = |t: &Tensor| t.to_device(&Device::Cpu);
                let (e, e_plain) = (rel_err(&cpu(&fused)?, &reference)?, rel_err(&cpu(&plain)?, &reference)?);
                worst = worse(worst, e);
                println!("| 8192+8192x3072 | {p} | {dtype:?} | {m} | {e:.2e} | {e_plain:.2e} |");
            }
            if worst.is_nan() || worst > limit {
                fails.push(format!("{p} {dtype:?} {worst:.2e} > {limit:.1e}"));
            }
        }
    }
    println!();
    if !fails.is_empty() {
        return Err(minilab::Error::Runtime(format!("gate/up + silu·up: {}", fails.join(", "))));
    }
    Ok(())
}

/// q/k/v of Llama-3.2-3B read in one launch (`SwitchableLinear::forward_many`) against each layer
/// on the plain path.
fn check_fused(dev: &Device) -> minilab::Result<()> {
    println!("| q/k/v in one launch | format | dtype | rows | max |fused − plain| / max |plain| |");
    println!("| --- | --- | --- | ---: | ---: |");
    for dtype in [DType::F32, DType::BF16] {
        let layers = [3072, 1024, 1024]
            .map(|n| Tensor::randn(0f32, 0.02, (n, 3072), &Device::Cpu)?.to_dtype(dtype))
            .into_iter()
            .map(|w| SwitchableLinear::new(w?, None, dev, dtype))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut layers = layers;
        for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
            for l in &mut layers {
                l.set_precision(p)?;
            }
            for m in [1usize, 3, 8] {
                let xs = Tensor::randn(0f32, 1.0, (1, m, 3072), dev)?.to_dtype(dtype)?;
                let refs: Vec<&SwitchableLinear> = layers.iter().collect();
                let fused = SwitchableLinear::forward_many(&refs, &xs)?;
                minilab::kernels::set_enabled(false);
                let plain = refs.iter().map(|l| l.forward(&xs)).collect::<candle_core::Result<Vec<_>>>()?;
                minilab::kernels::set_enabled(true);
                let e = fused.iter().zip(&plain).map(|(f, q)| rel_err(f, q)).collect::<minilab::Result<Vec<_>>>()?;
                println!(
                    "| 3072+1024+1024x3072 | {p} | {dtype:?} | {m} | {:.2e} |",
                    e.iter().fold(0f32, |a, &b| a.max(b))
                );
            }
        }
    }
    println!();
    Ok(())
}
