//! `device_check cuda qgemm [MODEL]`: the prefill GEMMs that read the codes themselves
//! (`MINILAB_QGEMM`, `kernels::qgemm`: minilab's at each tile, and CUTLASS's in a build with the
//! `cutlass` feature) against the shipped prefill (dequantize, then cuBLAS) and an f32 reference on
//! the CPU; it leaves the process on the shipped way.
//!
//! 1. Random weights of the 3B's and 8B's linear shapes, int8 and NF4, bf16 and f16, 9 to 1000 rows
//!    of xs (partial tiles included), every tile: max |Δ| / max |ref| against the CPU's product of
//!    xs and the layer's own dequantized weight. Both GPU ways round that weight to 16 bits (NF4) or
//!    apply the int8 scale after or before the sum, accumulate in f32 and round the output: a few
//!    units of 2⁻⁸; it fails past 1e-2 or on a non-finite output.
//! 2. Each shape at 512 rows timed both ways (`kernels::time_forward`), TFLOP/s.
//! 3. MODEL (default the 3B) in bf16, int8 and NF4: the prompt's logits both ways (max |Δ|, argmax
//!    agreement), then pp512 timed both ways and beside f16, for minilab's GEMM (tile by shape) and
//!    CUTLASS's.

use candle_core::{DType, Device, Module, Tensor};
use minilab::kernels::qgemm::{self, Tile, Way};
use minilab::quant::{Precision, SwitchableLinear};

use super::kernels::time_forward;
use super::prefill::{ids, pp_ms, prompt_ab, PromptAb};
use super::{rel_err, timed_model, worse};

/// The GEMMs checked for a `dtype` model: minilab's at each tile, then CUTLASS's where built (bf16
/// only: its GEMMs are built for bf16 models, others fall back to the shipped way).
fn ways(dtype: DType) -> Vec<Way> {
    let mut ways = vec![Way::Own(Tile::Auto), Way::Own(Tile::Rows64), Way::Own(Tile::Rows128)];
    if qgemm::WORDS.contains(&"cutlass") && dtype == DType::BF16 {
        ways.push(Way::Cutlass);
    }
    ways
}

/// A way's column name: its `MINILAB_QGEMM` word.
fn name_of(way: Way) -> &'static str {
    qgemm::word(Some(way))
}

/// Part 1 and 2 for one shape `(n, k)`; the worst error it saw.
fn check_shape(dev: &Device, (n, k): (usize, usize)) -> minilab::Result<f32> {
    let master = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?;
    let mut worst = 0f32;
    for dtype in [DType::BF16, DType::F16] {
        let mut layer = SwitchableLinear::new(master.to_dtype(dtype)?, None, dev, dtype)?;
        for p in [Precision::Int8, Precision::Nf4] {
            layer.set_precision(p)?;
            let w = layer.weight()?.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            let mut errs = Vec::new();
            for m in [9usize, 64, 77, 512, 1000] {
                let xs = Tensor::randn(0f32, 1.0, (m, k), dev)?.to_dtype(dtype)?;
                // [m, k]·[k, n] → [m, n]
                let reference = xs.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.matmul(&w.t()?)?;
                qgemm::set(None);
                let shipped = rel_err(&layer.forward(&xs)?, &reference)?;
                let mut e = Vec::new();
                for way in ways(dtype) {
                    qgemm::set(Some(way));
                    e.push(rel_err(&layer.forward(&xs)?, &reference)?);
                }
                qgemm::set(None);
                worst = e.iter().fold(worst, |a, &b| worse(a, b));
                let e: Vec<String> = e.iter().map(|e| format!("{e:.1e}")).collect();
                errs.push(format!("{m}: {shipped:.1e} / {}", e.join(" ")));
            }
            let xs = Tensor::randn(0f32, 1.0, (512, k), dev)?.to_dtype(dtype)?;
            let flops = 2.0 * 512.0 * n as f64 * k as f64;
            qgemm::set(None);
            let shipped = time_forward(&layer, &xs, dev)?;
            let mut secs = Vec::new();
            for way in ways(dtype) {
                qgemm::set(Some(way));
                secs.push(time_forward(&layer, &xs, dev)?);
            }
            qgemm::set(None);
            let best = secs.iter().copied().fold(f64::INFINITY, f64::min);
            let us: Vec<String> = secs.iter().map(|s| format!("{:.1}", s * 1e6)).collect();
            println!(
                "| {n}x{k} | {p} | {dtype:?} | {} | {:.1} | {} | {:.2}× | {:.0} |",
                errs.join("; "),
                shipped * 1e6,
                us.join(" / "),
                shipped / best,
                flops / best / 1e12
            );
        }
    }
    Ok(worst)
}

/// Part 3: `name`'s prompt logits and pp512 with and without each GEMM (minilab's at the tile its
/// shape picks, CUTLASS's where built).
fn check_model(dev: &Device, name: &str) -> minilab::Result<()> {
    println!(
        "| {name} bf16 | GEMM | max |Δlogit| | argmax agrees | pp512 shipped ms | GEMM ms | shipped/GEMM | f16 ms |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let f16_ms = {
        let loaded = timed_model(dev, name, Precision::F16)?;
        let prompt = ids(dev, loaded.model.config().vocab_size, (1, 512), 5)?;
        pp_ms(&loaded.model, dev, &prompt)?
    };
    for p in [Precision::Int8, Precision::Nf4] {
        let loaded = timed_model(dev, name, p)?;
        for way in ways(DType::BF16).into_iter().filter(|w| matches!(w, Way::Own(Tile::Auto) | Way::Cutlass)) {
            let ab = prompt_ab(&loaded.model, dev, 512, |on| qgemm::set(on.then_some(way)))?;
            qgemm::set(None);
            let PromptAb { diff, agree, ms: [a, b], .. } = ab;
            let gemm = name_of(way);
            println!("| {p} | {gemm} | {diff:.3e} | {agree}/512 | {a:.3} | {b:.3} | {:.3} | {f16_ms:.3} |", a / b);
        }
    }
    Ok(())
}

pub fn check_qgemm(dev: &Device, name: &str) -> minilab::Result<()> {
    let names: Vec<&str> = ways(DType::BF16).into_iter().map(name_of).collect();
    println!(
        "| shape | format | dtype | rows: shipped / {} (max |Δ| / max |ref|) | m=512 shipped µs | {} µs | shipped/best | best TFLOP/s |",
        names.join(", "),
        names.join(" / ")
    );
    println!("| --- | --- | --- | --- | ---: | ---: | ---: | ---: |");
    let mut worst = 0f32;
    // (out, in): the 3B's q/o, k/v, gate/up and down; the 8B's gate/up and down
    for shape in [(3072, 3072), (1024, 3072), (8192, 3072), (3072, 8192), (14336, 4096), (4096, 14336)] {
        worst = worse(worst, check_shape(dev, shape)?);
    }
    println!("worst qgemm error: {worst:.2e}");
    println!();
    check_model(dev, name)?;
    super::within(worst, 1e-2, "qgemm against the f32 reference")
}

/// Median and spread (min, max) of `batches` means of 50 forwards each, in µs, after 10 warm-ups.
pub(super) fn time_spread(layer: &SwitchableLinear, xs: &Tensor, dev: &Device) -> minilab::Result<[f64; 3]> {
    for _ in 0..10 {
        layer.forward(xs)?;
    }
    let mut means = Vec::new();
    for _ in 0..5 {
        dev.synchronize()?;
        let t = std::time::Instant::now();
        for _ in 0..50 {
            layer.forward(xs)?;
        }
        dev.synchronize()?;
        means.push(t.elapsed().as_secs_f64() * 1e6 / 50.0);
    }
    means.sort_by(f64::total_cmp);
    Ok([means[2], means[0], means[4]])
}

/// `device_check cuda qgemm-rows`: where the GEMM pays. Per 3B/8B shape (bf16) and rows of xs from
/// 16 to 512: µs of the bf16 weight (cuBLAS), of int8/NF4 the shipped way and by the GEMM at 64 and
/// 128 rows a tile (median of 5 batches of 50, spread min–max), and the best GEMM over shipped.
pub fn check_qgemm_rows(dev: &Device) -> minilab::Result<()> {
    println!("| shape | rows | bf16 µs | format | shipped µs | qgemm 64 µs | qgemm 128 µs | shipped / best qgemm |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    let show = |t: [f64; 3]| format!("{:.1} ({:.1}–{:.1})", t[0], t[1], t[2]);
    for (n, k) in [(3072, 3072), (1024, 3072), (8192, 3072), (3072, 8192), (14336, 4096), (4096, 14336)] {
        let master = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?.to_dtype(DType::BF16)?;
        let mut layer = SwitchableLinear::new(master, None, dev, DType::BF16)?;
        for m in [16usize, 32, 64, 128, 256, 512] {
            let xs = Tensor::randn(0f32, 1.0, (m, k), dev)?.to_dtype(DType::BF16)?;
            layer.set_precision(Precision::F16)?;
            qgemm::set(None);
            let f16 = time_spread(&layer, &xs, dev)?;
            for p in [Precision::Int8, Precision::Nf4] {
                layer.set_precision(p)?;
                let mut t = Vec::new();
                for way in [None, Some(Way::Own(Tile::Rows64)), Some(Way::Own(Tile::Rows128))] {
                    qgemm::set(way);
                    t.push(time_spread(&layer, &xs, dev)?);
                }
                qgemm::set(None);
                let best = t[1][0].min(t[2][0]);
                println!(
                    "| {n}x{k} | {m} | {} | {p} | {} | {} | {} | {:.2}× |",
                    show(f16),
                    show(t[0]),
                    show(t[1]),
                    show(t[2]),
                    t[0][0] / best
                );
            }
        }
    }
    Ok(())
}
