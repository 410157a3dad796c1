//! `device_check cuda wide [MODEL]`: the prompt's small ops with 16-byte accesses
//! (`kernels::prefill_ops::wide`, the default) against the kernels of 2-byte accesses
//! (`MINILAB_WIDE_OPS=0`); it leaves the process wide. Flash attention (`kernels::flash`, on by
//! default) replaces a bf16 prompt's softmax, so it is off while this check runs (the softmax is one
//! of the ops compared) and as it was at the end.
//!
//! 1. Each op alone on random inputs of real shapes (the 3B's and 8B's at 512 tokens, odd ones that
//!    fall back to the narrow kernels, a decode step's one row), f32, bf16 and f16: silu·up, the
//!    residual sum and RoPE with the cache writes bit for bit, the norm and the softmax within a few
//!    units of their last place (the order of a sum differs); then each op timed both ways at the
//!    3B's and 8B's pp512 shapes, µs.
//! 2. The synthetic 1B in f32, every format: prompts, a continuation, a step and a scored window
//!    within 1e-4 of the narrow kernels.
//! 3. MODEL (default the 3B) in bf16, every format: pp512's logits both ways, then its ms both ways.

use candle_core::{DType, Device, Tensor};
use minilab::kernels::{decode, flash, prefill_ops, softmax};
use minilab::quant::Precision;
use std::time::Instant;

use super::prefill::{check_f32_ab, prompt_ab, PromptAb};
use super::{as_found, rel_err, timed_model, within, worse, FORMATS};

pub(super) type Run<'a> = Box<dyn Fn() -> candle_core::Result<Vec<Tensor>> + 'a>;

/// `run`'s outputs with the switch `set` turns off, then on (left on).
fn both(run: &Run, set: fn(bool)) -> minilab::Result<[Vec<Tensor>; 2]> {
    set(false);
    let off = run();
    set(true);
    Ok([off?, run()?])
}

/// µs of one `run` with the switch `set` turns off, then on (median of 5 rounds of 50, alternating).
pub(super) fn time_both(dev: &Device, run: &Run, set: fn(bool)) -> minilab::Result<[f64; 2]> {
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..5 {
        for (on, t) in [false, true].into_iter().zip(&mut times) {
            set(on);
            run()?;
            dev.synchronize()?;
            let start = Instant::now();
            for _ in 0..50 {
                run()?;
            }
            dev.synchronize()?;
            t.push(start.elapsed().as_secs_f64() * 1e6 / 50.0);
        }
    }
    set(true);
    Ok(times.map(|mut v| super::median(&mut v)))
}

/// Normal values of standard deviation `scale`, of `shape`, in `dtype`.
pub(super) fn random(dev: &Device, dtype: DType, shape: &[usize], scale: f64) -> minilab::Result<Tensor> {
    Ok((Tensor::randn(0f32, 1.0, shape, dev)? * scale)?.to_dtype(dtype)?)
}

/// The ops of item 1 on `dev` in `dtype`: (name, shape, closure).
fn ops<'a>(dev: &'a Device, dtype: DType) -> minilab::Result<Vec<(String, Run<'a>)>> {
    let rand = |shape: &[usize], scale: f64| random(dev, dtype, shape, scale);
    let mut out: Vec<(String, Run)> = Vec::new();
    for (rows, h) in [(512, 3072), (512, 4096), (7, 2048), (1, 3072), (33, 576), (5, 100)] {
        let (xs, ys, w) = (rand(&[rows, h], 1.0)?, rand(&[rows, h], 0.5)?, rand(&[h], 1.0)?);
        let run = move || {
            let (res, normed) = decode::add_rms_norm(&xs, &ys, &w, 1e-5)?;
            Ok(vec![res, normed])
        };
        out.push((format!("add_rms_norm {rows}×{h}"), Box::new(run)));
    }
    for (rows, n) in [(512, 8192), (512, 14336), (3, 8192), (1, 8192), (5, 100)] {
        let (gate, up) = (rand(&[rows, n], 2.0)?, rand(&[rows, n], 1.0)?);
        out.push((format!("silu_mul {rows}×{n}"), Box::new(move || Ok(vec![decode::silu_mul(&gate, &up)?]))));
    }
    // the 3B's q/k/v at 512 tokens after 3 cached (stacked: rows 5120 wide), the 8B's apart, an odd
    // head size that falls back, and a decode step
    for (heads, kv, d, t, stacked) in
        [(24, 8, 128, 512, true), (32, 8, 128, 512, false), (4, 2, 36, 9, true), (24, 8, 128, 1, true)]
    {
        let w = (heads + 2 * kv) * d;
        let qkv = rand(&[1, t, w], 1.0)?;
        let (q, k, v) =
            (qkv.narrow(2, 0, heads * d)?, qkv.narrow(2, heads * d, kv * d)?, qkv.narrow(2, (heads + kv) * d, kv * d)?);
        let [q, k, v] = if stacked { [q, k, v] } else { [q.contiguous()?, k.contiguous()?, v.contiguous()?] };
        let tables = [rand(&[1024, d / 2], 1.0)?, rand(&[1024, d / 2], 1.0)?];
        let pos = Tensor::new(&[3u32], dev)?;
        // fresh caches a run, so that the two ways' outputs are apart (the timing includes them)
        let run = move || {
            let (kc, vc) = (Tensor::zeros((1, kv, 1024, d), dtype, dev)?, Tensor::zeros((1, kv, 1024, d), dtype, dev)?);
            let q_out = decode::rope_kv(heads, [&q, &k, &v], [&tables[0], &tables[1]], &pos, [&kc, &vc])?;
            Ok(vec![q_out, kc, vc])
        };
        out.push((format!("rope_kv {heads}+{kv}+{kv}×{d}×{t}"), Box::new(run)));
    }
    let shapes = [(24, 512, 512), (32, 512, 512), (4, 96, 96), (8, 7, 71), (2, 17, 1040)];
    out.extend(softmax_ops(dev, dtype, &shapes)?);
    Ok(out)
}

/// The causal softmax over scores `[heads, t, total]` (the last `t` positions of `total`) per shape.
fn softmax_ops<'a>(
    dev: &'a Device,
    dtype: DType,
    shapes: &[(usize, usize, usize)],
) -> minilab::Result<Vec<(String, Run<'a>)>> {
    let mut out: Vec<(String, Run)> = Vec::new();
    for &(heads, t, total) in shapes {
        let scores = random(dev, dtype, &[heads, t, total], 4.0)?;
        let start = total - t;
        let run = move || Ok(vec![softmax::causal_softmax(&scores, 0.088, t, start)?]);
        out.push((format!("causal_softmax {heads}×{t}×{total}"), Box::new(run) as Run));
    }
    Ok(out)
}

/// The register-held softmax (`prefill_ops::softmax_regs`) against the wide one: bit for bit on
/// rows that fit (2, 4 and 8 vectors a lane), that fall back (too long, or not whole vectors) and
/// that mask all but one element, every dtype; its µs at the 3B's pp512 and pp2048; then MODEL's
/// pp512 logits, which must not move, and ms both ways.
fn check_regs(dev: &Device, name: &str) -> minilab::Result<()> {
    prefill_ops::set_wide(true);
    let shapes = [(24, 512, 512), (4, 96, 96), (8, 7, 71), (2, 17, 1040), (3, 64, 2048), (2, 5, 2056), (3, 1, 1)];
    println!("| causal_softmax, registers against wide | dtype | max |Δ| |");
    println!("| --- | --- | --- |");
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for (op, run) in softmax_ops(dev, dtype, &shapes)? {
            let [off, on] = both(&run, prefill_ops::set_softmax_regs)?;
            let err = rel_err(&on[0], &off[0])?;
            println!("| {op} | {dtype:?} | {err:.2e} |");
            if err != 0.0 {
                return Err(minilab::Error::Runtime(format!("{op} {dtype:?}: registers and wide differ ({err:.2e})")));
            }
        }
    }
    println!();
    println!("| op (bf16) | wide µs | registers µs | wide/registers |");
    println!("| --- | ---: | ---: | ---: |");
    for (op, run) in softmax_ops(dev, DType::BF16, &[(24, 512, 512), (32, 512, 512), (24, 2048, 2048)])? {
        let [a, b] = time_both(dev, &run, prefill_ops::set_softmax_regs)?;
        println!("| {op} | {a:.2} | {b:.2} | {:.2} |", a / b);
    }
    println!();
    let loaded = timed_model(dev, name, Precision::F16)?;
    let PromptAb { diff, ms: [a, b], .. } = prompt_ab(&loaded.model, dev, 512, prefill_ops::set_softmax_regs)?;
    println!(
        "{name} bf16 f16 pp512, registers against wide: max |Δlogit| {diff:.3e}, {a:.3} → {b:.3} ms ({:.3}×)",
        a / b
    );
    prefill_ops::set_softmax_regs(true); // the default
    within(diff, 0.0, "register-held softmax, pp512 logits")
}

/// Item 1: each output's max |Δ| over max |narrow|; bit-equal ops must show 0.
fn check_ops(dev: &Device) -> minilab::Result<()> {
    println!("| op | dtype | max |wide − narrow| / max |narrow| per output |");
    println!("| --- | --- | --- |");
    let mut worst = 0f32;
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        // a bf16 unit in the last place relative to 1 is 7.8e-3; f32 sums differ near 1e-7
        let tol = if dtype == DType::F32 { 1e-5 } else { 1.6e-2 };
        for (name, run) in ops(dev, dtype)? {
            let [off, on] = both(&run, prefill_ops::set_wide)?;
            let errs = on.iter().zip(&off).map(|(a, b)| rel_err(a, b)).collect::<minilab::Result<Vec<_>>>()?;
            let exact = ["silu", "add_rms", "rope"].iter().any(|op| name.starts_with(op));
            // silu·up, the sum and RoPE are element by element: any difference is a wrong index
            if exact && errs[..if name.starts_with("rope") { 3 } else { 1 }].iter().any(|&e| e != 0.0) {
                return Err(minilab::Error::Runtime(format!("{name} {dtype:?}: wide and narrow differ ({errs:?})")));
            }
            errs.iter().for_each(|&e| worst = worse(worst, e / tol));
            let shown: Vec<String> = errs.iter().map(|e| format!("{e:.2e}")).collect();
            println!("| {name} | {dtype:?} | {} |", shown.join(" / "));
        }
    }
    within(worst, 1.0, "wide small ops (error over tolerance)")?;
    println!();
    println!("| op (bf16) | narrow µs | wide µs | narrow/wide |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, run) in ops(dev, DType::BF16)? {
        if name.contains("512") {
            let [a, b] = time_both(dev, &run, prefill_ops::set_wide)?;
            println!("| {name} | {a:.2} | {b:.2} | {:.2} |", a / b);
        }
    }
    println!();
    Ok(())
}

pub(super) fn check_wide(dev: &Device, name: &str) -> minilab::Result<()> {
    as_found((flash::enabled, flash::set_enabled), || {
        flash::set_enabled(false);
        check_all(dev, name)
    })
}

fn check_all(dev: &Device, name: &str) -> minilab::Result<()> {
    check_ops(dev)?;
    check_regs(dev, name)?;
    check_f32_ab(dev, prefill_ops::set_wide, "wide small ops, f32", |_, _| Ok(String::new()))?;
    println!("| {name} bf16 pp512 | max |Δlogit| | max |logit| | argmax agrees | narrow ms | wide ms | narrow/wide |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0f32;
    for p in FORMATS {
        let loaded = timed_model(dev, name, p)?;
        let PromptAb { diff, top, agree, ms: [a, b] } = prompt_ab(&loaded.model, dev, 512, prefill_ops::set_wide)?;
        worst = worse(worst, diff / top);
        println!("| {p} | {diff:.3e} | {top:.2} | {agree}/512 | {a:.3} | {b:.3} | {:.3} |", a / b);
    }
    prefill_ops::set_wide(true);
    within(worst, 5e-2, "wide small ops, bf16")
}
