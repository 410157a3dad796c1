//! `device_check cuda folds`: the norm before and the residual add after a GEMV launch
//! (`MINILAB_FUSE_NORM=1`, `=late`, then `=stats`), at the 3B's q/k/v, gate/up with silu·up (the NF4
//! R = 4 kernel), o_proj and down_proj shapes, one row, f32 and bf16, every format. The norm
//! launches take the residual o_proj's launch wrote (under `stats`, with the statistics it handed
//! on) and are held to an f32 reference (candle's path beside them), the residual ones to the plain
//! path's add. It leaves the switch as it found it.

use candle_core::{DType, Device, Module, Tensor};
use minilab::kernels::{norm_fold, set_enabled, set_norm_fold, NormFold, NormRef};
use minilab::quant::{Precision, SwitchableLinear};

use super::rel_err;

/// Random `[n, k]` layers on `dev`.
fn layers(shapes: &[(usize, usize)], dev: &Device, dtype: DType) -> minilab::Result<Vec<SwitchableLinear>> {
    let mut out = Vec::with_capacity(shapes.len());
    for &(n, k) in shapes {
        let w = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?.to_dtype(dtype)?;
        out.push(SwitchableLinear::new(w, None, dev, dtype)?);
    }
    Ok(out)
}

/// The formats of the layers one row group of the table runs: q, k, v; o_proj and down_proj;
/// gate, up.
pub(super) struct Formats {
    pub label: String,
    pub qkv: [Precision; 3],
    pub o: Precision,
    pub mlp: [Precision; 2],
}

impl Formats {
    fn uniform(p: Precision) -> Self {
        Self { label: p.to_string(), qkv: [p; 3], o: p, mlp: [p; 2] }
    }
}

/// Each way's folded launches, every layer in one format, in f32 and bf16 (see [`check_launches`]).
pub fn check_folds(dev: &Device) -> minilab::Result<()> {
    let ways = [("1", NormFold::Shared), ("late", NormFold::Late), ("stats", NormFold::Stats)];
    let formats = [Precision::F16, Precision::Int8, Precision::Nf4].map(Formats::uniform);
    check_launches(dev, &ways, &formats, &[(DType::F32, 1e-4), (DType::BF16, 4.0 * 2f32.powi(-8))], "folded launches")
}

/// Each way's launches in each of `formats` and `dtypes`: the norm launches against an f32 reference
/// from the layers' own (dequantized) weights, within each dtype's bound (4u in bf16, u = 2⁻⁸: the
/// normalized x (the `=1` way), the outputs, and silu·up's gate, up and product are rounded); the
/// residual launches against the plain path's add within 1e-2. Fails past those or on a NaN, and
/// leaves the fold as it found it.
pub(super) fn check_launches(
    dev: &Device,
    ways: &[(&str, NormFold)],
    formats: &[Formats],
    dtypes: &[(DType, f32)],
    what: &str,
) -> minilab::Result<()> {
    let found = norm_fold();
    println!("| way | launch | format | dtype | folded: max |Δ| / max |ref| | plain path |");
    println!("| --- | --- | --- | --- | ---: | ---: |");
    let mut fails = Vec::new();
    for &(way, fold) in ways {
        set_norm_fold(fold);
        let e = check_way(dev, way, (formats, dtypes), &mut fails);
        set_norm_fold(found);
        e?;
    }
    println!();
    if !fails.is_empty() {
        return Err(minilab::Error::Runtime(format!("{what}: {}", fails.join(", "))));
    }
    Ok(())
}

/// One way's rows of the table; what fails its bound goes to `fails`.
fn check_way(
    dev: &Device,
    way: &str,
    (formats, dtypes): (&[Formats], &[(DType, f32)]),
    fails: &mut Vec<String>,
) -> minilab::Result<()> {
    let cpu32 = |t: &Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F32);
    for &(dtype, limit) in dtypes {
        let mut qkv = layers(&[(3072, 3072), (1024, 3072), (1024, 3072)], dev, dtype)?;
        let mut o = layers(&[(3072, 3072), (3072, 8192)], dev, dtype)?;
        let mut mlp = layers(&[(8192, 3072), (8192, 3072)], dev, dtype)?;
        let norm_w = (Tensor::randn(0f32, 0.1, 3072, dev)? + 1.0)?.to_dtype(dtype)?;
        let plain_norm = NormRef::new(&norm_w, 1e-5);
        for f in formats {
            let p = &f.label;
            for (l, &q) in qkv.iter_mut().zip(&f.qkv).chain(mlp.iter_mut().zip(&f.mlp)) {
                l.set_precision(q)?;
            }
            for l in o.iter_mut() {
                l.set_precision(f.o)?;
            }
            let res0 = (Tensor::randn(0f32, 1.0, (1, 1, 3072), dev)? * 4.0)?.to_dtype(dtype)?;
            let xs = Tensor::randn(0f32, 1.0, (1, 1, 3072), dev)?.to_dtype(dtype)?;
            // the residual stream as o_proj's launch leaves it, with the norm's statistics where
            // the stats way takes one row of 16-bit xs
            let (res, stats) = o[0].forward_residual_stats(&xs, &res0, plain_norm)?;
            if way == "stats" && (stats.is_some() != (dtype != DType::F32)) {
                fails.push(format!("stats {p} {dtype:?}: statistics handed on: {}", stats.is_some()));
            }
            let norm = NormRef { stats: stats.as_ref(), ..plain_norm };
            let refs: Vec<&SwitchableLinear> = qkv.iter().collect();
            let folded = SwitchableLinear::forward_many_normed(&refs, &res, Some(norm))?;
            let silu = SwitchableLinear::forward_silu_mul(&mlp[0], &mlp[1], &res, Some(norm))?;
            let act = Tensor::randn(0f32, 1.0, (1, 1, 8192), dev)?.to_dtype(dtype)?;
            let with_res = [res.clone(), o[1].forward_residual(&act, &res)?];
            // the f32 reference: RMSNorm of the stored residual, times each layer's stored weight
            let normed32 = candle_nn::ops::rms_norm(&cpu32(&res)?, &cpu32(&norm_w)?, 1e-5)?.reshape((1, 3072))?;
            let reference = |l: &SwitchableLinear| -> candle_core::Result<Tensor> {
                // (1, 3072) · (3072, n) → (1, 1, n), the launches' shape
                normed32.matmul(&cpu32(&l.weight()?)?.t()?)?.unsqueeze(0)
            };
            let silu_ref = (candle_nn::ops::silu(&reference(&mlp[0])?)? * reference(&mlp[1])?)?;
            set_enabled(false);
            let normed = candle_nn::ops::rms_norm(&res, &norm_w, 1e-5)?;
            let plain = refs.iter().map(|l| l.forward(&normed)).collect::<candle_core::Result<Vec<_>>>()?;
            let plain_silu = (candle_nn::ops::silu(&mlp[0].forward(&normed)?)? * mlp[1].forward(&normed)?)?;
            let plain_res = [(&res0 + o[0].forward(&xs)?)?, (&res + o[1].forward(&act)?)?];
            set_enabled(true);
            let mut rows = Vec::new();
            for ((f, q), l) in folded.iter().zip(&plain).zip(&refs) {
                let want = reference(l)?;
                rows.push(("norm + q/k/v", rel_err(f, &want)?, Some(rel_err(q, &want)?), limit));
            }
            rows.push((
                "norm + gate/up + silu·up",
                rel_err(&silu, &silu_ref)?,
                Some(rel_err(&plain_silu, &silu_ref)?),
                limit,
            ));
            rows.push(("o_proj + residual", rel_err(&with_res[0], &plain_res[0])?, None, 1e-2));
            rows.push(("down_proj + residual", rel_err(&with_res[1], &plain_res[1])?, None, 1e-2));
            for (name, e, e_plain, bound) in rows {
                let plain_col = e_plain.map_or("(the reference)".into(), |e| format!("{e:.2e}"));
                println!("| {way} | {name} | {p} | {dtype:?} | {e:.2e} | {plain_col} |");
                if e.is_nan() || e > bound {
                    fails.push(format!("{way} {name} {p} {dtype:?} {e:.2e} > {bound:.1e}"));
                }
            }
        }
    }
    Ok(())
}
