//! `device_check cuda gemv-rows [MODEL]`: short prompts through the decode GEMVs, 8 rows a launch
//! (`MINILAB_GEMV_PROMPT`, `kernels::short_prompt`), against the prefill way (dequantize, then
//! cuBLAS); it leaves the process on the default.
//!
//! 1. Random weights of the 3B's and 8B's linear shapes in bf16, int8 and NF4, 9 to 128 rows of xs:
//!    both ways against the CPU's f32 product with the layer's dequantized weight (max |Δ| /
//!    max |ref|; fails past 1e-2 or on a non-finite output), then µs of both ways and of the bf16
//!    weight (cuBLAS), median of 5 batches of 50 with the spread.
//! 2. MODEL (default the 3B) in bf16, int8 and NF4: 16-, 32- and 64-token prompts' logits both ways
//!    (max |Δ|, argmax agreement) and their ms.

use candle_core::{DType, Device, Module, Tensor};
use minilab::kernels::short_prompt;
use minilab::quant::{Precision, SwitchableLinear};

use super::prefill::{prompt_ab, PromptAb};
use super::qgemm::time_spread;
use super::{rel_err, timed_model, worse};

const ROWS: [usize; 8] = [9, 16, 24, 32, 48, 64, 96, 128];

/// Part 1 for one shape `(n, k)`; the worst error it saw.
fn check_shape(dev: &Device, (n, k): (usize, usize)) -> minilab::Result<f32> {
    let master = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?.to_dtype(DType::BF16)?;
    let mut layer = SwitchableLinear::new(master, None, dev, DType::BF16)?;
    let show = |t: [f64; 3]| format!("{:.1} ({:.1}–{:.1})", t[0], t[1], t[2]);
    let mut worst = 0f32;
    for m in ROWS {
        let xs = Tensor::randn(0f32, 1.0, (m, k), dev)?.to_dtype(DType::BF16)?;
        layer.set_precision(Precision::F16)?;
        let bf16 = time_spread(&layer, &xs, dev)?;
        for p in [Precision::Int8, Precision::Nf4] {
            layer.set_precision(p)?;
            let w = layer.weight()?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            // [m, k]·[k, n] → [m, n]
            let reference = xs.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.matmul(&w.t()?)?;
            let mut errs = [0f32; 2];
            let mut times = Vec::new();
            for (i, word) in ["off", "128"].into_iter().enumerate() {
                short_prompt::set(word);
                errs[i] = rel_err(&layer.forward(&xs)?, &reference)?;
                times.push(time_spread(&layer, &xs, dev)?);
            }
            short_prompt::set("auto");
            worst = worse(worst, errs[1]);
            println!(
                "| {n}x{k} | {m} | {} | {p} | {} | {} | {:.1e} / {:.1e} | {:.2}× |",
                show(bf16),
                show(times[0]),
                show(times[1]),
                errs[0],
                errs[1],
                times[0][0] / times[1][0]
            );
        }
    }
    Ok(worst)
}

/// Part 2: `name`'s short prompts both ways.
fn check_model(dev: &Device, name: &str) -> minilab::Result<()> {
    println!("| {name} bf16 | tokens | max |Δlogit| | max |logit| | argmax agrees | prefill way ms | GEMV chunks ms | ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in [Precision::Int8, Precision::Nf4] {
        let loaded = timed_model(dev, name, p)?;
        for tokens in [16, 32, 64] {
            let ab = prompt_ab(&loaded.model, dev, tokens, |on| {
                short_prompt::set(if on { "128" } else { "off" });
            })?;
            let PromptAb { diff, top, agree, ms: [a, b] } = ab;
            println!("| {p} | {tokens} | {diff:.3e} | {top:.2} | {agree}/{tokens} | {a:.3} | {b:.3} | {:.2}× |", a / b);
        }
    }
    short_prompt::set("auto");
    Ok(())
}

pub fn check_gemv_rows(dev: &Device, name: &str) -> minilab::Result<()> {
    println!("| shape | rows | bf16 µs | format | prefill way µs | GEMV chunks µs | max |Δ| / max |ref| prefill / chunks | prefill / chunks |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    let mut worst = 0f32;
    // (out, in): the 3B's q/o, k/v, gate/up and down; the 8B's gate/up and down
    for shape in [(3072, 3072), (1024, 3072), (8192, 3072), (3072, 8192), (14336, 4096), (4096, 14336)] {
        worst = worse(worst, check_shape(dev, shape)?);
    }
    println!("worst GEMV-chunk error: {worst:.2e}");
    println!();
    check_model(dev, name)?;
    super::within(worst, 1e-2, "short prompts through the GEMVs against the f32 reference")
}
