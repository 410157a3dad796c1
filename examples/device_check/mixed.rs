//! `device_check cuda mixed [MODEL]`: q/k/v and gate/up groups whose layers hold different formats,
//! in one launch (gemv_mixed.cuh, the default) against layer by layer (`MINILAB_FUSE_MIXED=0`).
//!
//! 1. The launches at the 3B's shapes in bf16 and f16, each way of folding the norm (none, the
//!    block's, late, which such launches take the block's way for, and stats), against an f32
//!    reference from the layers' own weights, as `device_check cuda folds` holds the one-format
//!    launches: within 4u (u = 2⁻⁸ in bf16, 2⁻¹¹ in f16).
//! 2. The 1B's bf16 decode logits, graph replayed, for plans that split groups, one launch and layer
//!    by layer, each against the plain tensor-op path (kernels off, eager): max |Δ| relative to the
//!    largest logit and argmax agreement. Both ways round differently from the plain path (the
//!    norms fold; for one-format plans that came to 0.14–0.18 of logits up to about 6 and argmax
//!    28–32 of 32, BENCHMARKS.md session 27), so one launch fails only past twice layer by layer's
//!    distance plus 2⁻⁸: a launch that rotated, cached or summed the wrong rows lands near 1. And
//!    the graphs' kernels both ways: one launch must take fewer, or it did not happen.
//! 3. MODEL's graph-replayed step per plan, both ways alternating three times (median ms a token);
//!    `device_check cuda mixed MODEL time` runs this part alone.
//!
//! It leaves the process with the launches of mixed formats on.

use candle_core::{DType, Device};
use minilab::bench::time_model::split_groups;
use minilab::kernels::{set_enabled, set_fuse_mixed, NormFold};
use minilab::model::LayerKind;
use minilab::quant::Precision;

use super::folds::{check_launches, Formats};
use super::ways::{time_ways_on, Setting};
use super::{argmax, PlanOf};

/// Plans whose q/k/v or gate/up groups hold two or three formats, and one that holds one (a
/// control: the switch must not change it).
const PLANS: [(&str, PlanOf); 4] = [
    ("all nf4 (no group split)", |_| Precision::Nf4),
    ("k and v f16, the rest nf4", |id| match id.kind {
        LayerKind::AttnK | LayerKind::AttnV => Precision::F16,
        _ => Precision::Nf4,
    }),
    ("q and up nf4, the rest int8", |id| match id.kind {
        LayerKind::AttnQ | LayerKind::FfnUp => Precision::Nf4,
        _ => Precision::Int8,
    }),
    ("q f16, k int8, gate f16, the rest nf4", |id| match id.kind {
        LayerKind::AttnQ | LayerKind::FfnGate => Precision::F16,
        LayerKind::AttnK => Precision::Int8,
        _ => Precision::Nf4,
    }),
];

/// Parts 1–3, or with `time_only` part 3 alone.
pub(super) fn check_mixed(dev: &Device, name: &str, time_only: bool) -> minilab::Result<()> {
    set_fuse_mixed(true);
    let checks = || if time_only { Ok(()) } else { check_launches_mixed(dev).and_then(|()| check_decode(dev)) };
    let r = checks().and_then(|()| time_plans(dev, name));
    set_fuse_mixed(true);
    r
}

fn check_launches_mixed(dev: &Device) -> minilab::Result<()> {
    use Precision::{Int8, Nf4, F16};
    let formats = [
        Formats {
            label: "q f16 k int8 v nf4 / gate nf4 up f16".into(),
            qkv: [F16, Int8, Nf4],
            o: Int8,
            mlp: [Nf4, F16],
        },
        Formats {
            label: "q nf4 k f16 v f16 / gate int8 up nf4".into(),
            qkv: [Nf4, F16, F16],
            o: Nf4,
            mlp: [Int8, Nf4],
        },
        Formats {
            label: "q int8 k nf4 v int8 / gate f16 up int8".into(),
            qkv: [Int8, Nf4, Int8],
            o: F16,
            mlp: [F16, Int8],
        },
    ];
    let ways = [("0", NormFold::Off), ("1", NormFold::Shared), ("late", NormFold::Late), ("stats", NormFold::Stats)];
    let dtypes = [(DType::BF16, 4.0 * 2f32.powi(-8)), (DType::F16, 4.0 * 2f32.powi(-11))];
    check_launches(dev, &ways, &formats, &dtypes, "launches of mixed formats")
}

/// Part 2: the plans' decode logits and graph kernels, one launch against layer by layer, each
/// held to the plain tensor-op path (kernels off, eager).
fn check_decode(dev: &Device) -> minilab::Result<()> {
    let tokens: Vec<u32> = (0..40u32).map(|i| 1 + (i * 7919 + 13) % 128_000).collect();
    println!(
        "| plan (1B, bf16, graph) | one launch: max |Δ| / max |logit| from plain | argmax | layer by layer: from plain | argmax | kernels: one launch / layer by layer |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut fails = Vec::new();
    for (i, (label, pick)) in PLANS.into_iter().enumerate() {
        set_fuse_mixed(true);
        let (fused, k_fused) = super::bf16_decode_plan(dev, &pick, &tokens, true)?;
        set_fuse_mixed(false);
        let (split, k_split) = super::bf16_decode_plan(dev, &pick, &tokens, true)?;
        set_fuse_mixed(true);
        set_enabled(false);
        let plain = super::bf16_decode_plan(dev, &pick, &tokens, false);
        set_enabled(true);
        let plain = plain?.0;
        let top = plain.iter().flatten().map(|a| a.abs()).fold(0f32, super::worse);
        let from_plain = |run: &[Vec<f32>]| {
            let d =
                run.iter().flatten().zip(plain.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, super::worse);
            (d / top, run.iter().zip(&plain).filter(|(a, b)| argmax(a) == argmax(b)).count())
        };
        let ((e, agree), (e_split, agree_split)) = (from_plain(&fused), from_plain(&split));
        println!(
            "| {label} | {e:.2e} | {agree}/32 | {e_split:.2e} | {agree_split}/32 | {} / {} |",
            k_fused.0, k_split.0
        );
        // the control holds one format a group: the switch must change nothing
        let fewer = if i == 0 { k_fused.0 == k_split.0 } else { k_fused.0 < k_split.0 };
        if e.is_nan() || e > 2.0 * e_split + 2f32.powi(-8) || !fewer {
            fails.push(format!("{label}: {e:.2e} against {e_split:.2e}, kernels {} / {}", k_fused.0, k_split.0));
        }
    }
    println!();
    if !fails.is_empty() {
        return Err(minilab::Error::Runtime(format!("mixed-format decode: {}", fails.join("; "))));
    }
    Ok(())
}

/// Part 3: `name`'s step per plan, one launch against layer by layer.
fn time_plans(dev: &Device, name: &str) -> minilab::Result<()> {
    println!("| model | plan | one launch ms | layer by layer ms | layer by layer / one launch | split groups |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let ways = [
        Setting { name: "one launch", set: || set_fuse_mixed(true) },
        Setting { name: "layer by layer", set: || set_fuse_mixed(false) },
    ];
    for (label, pick) in PLANS {
        let loaded = super::planned_model(dev, name, &pick)?;
        let ms = time_ways_on(dev, &loaded.model, &ways);
        set_fuse_mixed(true);
        let (on, off) = ms.map(|ms| (ms[0], ms[1]))?;
        let [qkv, gate_up] = split_groups(loaded.model.layer_ids().into_iter().map(|id| (id, pick(id))));
        println!("| {name} | {label} | {on:.3} | {off:.3} | {:.3} | {} |", off / on, qkv + gate_up);
    }
    println!();
    Ok(())
}
