//! `device_check cuda folds`: the norm before and the residual add after a GEMV launch
//! (`MINILAB_FUSE_NORM=1`, then `=late`) against candle's norm, the layers and the add on the plain
//! path, at the 3B's q/k/v, o_proj and down_proj shapes, one row, f32 and bf16, every format; then
//! the 3B's gate/up with silu·up after a folded norm (the late way's R = 4 NF4 kernel). It leaves the
//! switch as it found it.

use candle_core::{DType, Device, Module, Tensor};
use minilab::kernels::{fold_norms, norm_late, set_enabled, set_fuse_norm, NormRef};
use minilab::quant::{Precision, SwitchableLinear};

use super::{rel_err, within, worse};

/// Random `[n, k]` layers on `dev`.
fn layers(shapes: &[(usize, usize)], dev: &Device, dtype: DType) -> minilab::Result<Vec<SwitchableLinear>> {
    let mut out = Vec::with_capacity(shapes.len());
    for &(n, k) in shapes {
        let w = Tensor::randn(0f32, 0.02, (n, k), &Device::Cpu)?.to_dtype(dtype)?;
        out.push(SwitchableLinear::new(w, None, dev, dtype)?);
    }
    Ok(out)
}

/// The worst error of the folded launches, each way; fails past 1e-2 (bf16 rounding) or on a NaN.
pub fn check_folds(dev: &Device) -> minilab::Result<()> {
    let found = (fold_norms(dev), norm_late());
    println!("| way | launch | format | dtype | max |folded − plain| / max |plain| |");
    println!("| --- | --- | --- | --- | ---: |");
    let mut worst = 0f32;
    for (way, late) in [("1", false), ("late", true)] {
        set_fuse_norm(true, late);
        let e = check_way(dev, way);
        set_fuse_norm(found.0, found.1);
        worst = worse(worst, e?);
    }
    println!();
    within(worst, 1e-2, "folded launches")
}

/// One way's rows of the table; its worst error.
fn check_way(dev: &Device, way: &str) -> minilab::Result<f32> {
    let mut worst = 0f32;
    for dtype in [DType::F32, DType::BF16] {
        let mut qkv = layers(&[(3072, 3072), (1024, 3072), (1024, 3072)], dev, dtype)?;
        let mut o = layers(&[(3072, 3072), (3072, 8192)], dev, dtype)?;
        let mut mlp = layers(&[(8192, 3072), (8192, 3072)], dev, dtype)?;
        let norm_w = (Tensor::randn(0f32, 0.1, 3072, dev)? + 1.0)?.to_dtype(dtype)?;
        let norm = NormRef { weight: &norm_w, eps: 1e-5 };
        for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
            for l in qkv.iter_mut().chain(o.iter_mut()).chain(mlp.iter_mut()) {
                l.set_precision(p)?;
            }
            let res = (Tensor::randn(0f32, 1.0, (1, 1, 3072), dev)? * 4.0)?.to_dtype(dtype)?;
            let refs: Vec<&SwitchableLinear> = qkv.iter().collect();
            let folded = SwitchableLinear::forward_many_normed(&refs, &res, Some(norm))?;
            let silu = SwitchableLinear::forward_silu_mul(&mlp[0], &mlp[1], &res, Some(norm))?;
            let act = Tensor::randn(0f32, 1.0, (1, 1, 8192), dev)?.to_dtype(dtype)?;
            let xs = Tensor::randn(0f32, 1.0, (1, 1, 3072), dev)?.to_dtype(dtype)?;
            let with_res = [o[0].forward_residual(&xs, &res)?, o[1].forward_residual(&act, &res)?];
            set_enabled(false);
            let normed = candle_nn::ops::rms_norm(&res, &norm_w, 1e-5)?;
            let plain = refs.iter().map(|l| l.forward(&normed)).collect::<candle_core::Result<Vec<_>>>()?;
            // silu·up in f32 on the rounded gate and up, as the launch computes it (candle's 16-bit
            // silu and product would round twice more)
            let [gate, up] = [&mlp[0], &mlp[1]].map(|l| l.forward(&normed)?.to_dtype(DType::F32));
            let plain_silu = (candle_nn::ops::silu(&gate?)? * up?)?;
            let plain_res = [(&res + o[0].forward(&xs)?)?, (&res + o[1].forward(&act)?)?];
            set_enabled(true);
            let mut rows = Vec::new();
            for (f, q) in folded.iter().zip(&plain) {
                rows.push(("norm + q/k/v", rel_err(f, q)?));
            }
            rows.push(("norm + gate/up + silu·up", rel_err(&silu, &plain_silu)?));
            rows.push(("o_proj + residual", rel_err(&with_res[0], &plain_res[0])?));
            rows.push(("down_proj + residual", rel_err(&with_res[1], &plain_res[1])?));
            for (name, e) in rows {
                worst = worse(worst, e);
                println!("| {way} | {name} | {p} | {dtype:?} | {e:.2e} |");
            }
        }
    }
    Ok(worst)
}
