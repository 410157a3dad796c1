//! The decode-time model's predictions against measured steps: synthetic presets with fixed plans
//! (`timemodel`), and any model with plan files (`plans`).

use super::PlanOf;
use candle_core::{DType, Device};
use minilab::bench::time_model::TimeModel;
use minilab::model::{self, LayerId, LayerKind, Model, ModelSpec};
use minilab::plan::PrecisionPlan;
use minilab::quant::Precision;

/// Token ids within the vocabulary, so that the small presets run too.
fn feed(model: &Model) -> Vec<u32> {
    let ids = (model.config().vocab_size as u32).saturating_sub(1).clamp(1, 100_000);
    (0..256u32).map(|i| 1 + (i * 7919 + 13) % ids).collect()
}

/// The median µs a token of 128 decode steps, `reps` times after a warm-up.
fn measured_us(model: &Model, feed: &[u32], reps: usize) -> minilab::Result<f64> {
    let pb = indicatif::ProgressBar::hidden();
    let t = minilab::bench::time_decode(model, &[], &feed[..128], reps, &pb)?;
    let mut us: Vec<f64> = t.samples_ns.iter().map(|&ns| ns as f64 / 1e3 / 128.0).collect();
    Ok(super::median(&mut us))
}

/// The sensitivity stage's time model of `model` for int8 and NF4 (tg128, three runs).
fn time_model(model: &mut Model, feed: &[u32]) -> minilab::Result<TimeModel> {
    let pb = indicatif::ProgressBar::hidden();
    TimeModel::measure(model, &[Precision::Int8, Precision::Nf4], feed, 128, 3, &pb)
}

/// `model` in `plan`'s formats: its predicted and its measured µs a token.
fn predicted_and_measured(
    tm: &TimeModel,
    model: &mut Model,
    plan: impl IntoIterator<Item = (LayerId, Precision)>,
    feed: &[u32],
) -> minilab::Result<(f64, f64)> {
    for (id, p) in plan {
        model.set_precision(id, p)?;
    }
    Ok((tm.predict_model_us(model).unwrap_or(f64::NAN), measured_us(model, feed, 3)?))
}

pub fn check_time_model(dev: &Device, name: &str) -> minilab::Result<()> {
    let mut loaded = model::load(&ModelSpec::Synthetic(name.into()), dev, DType::BF16)?;
    let feed = feed(&loaded.model);
    let tm = time_model(&mut loaded.model, &feed)?;
    println!(
        "{name}: f16 step {:.1} µs, fixed {:.1} µs, a split q/k/v {:.1} µs, a split gate/up {:.1} µs",
        tm.f16_step_us, tm.fixed_us, tm.splits.qkv_us, tm.splits.gate_up_us
    );
    // the uniform plans and the split ones calibrate the model (time model 5); the others test it
    let plans: [(&str, PlanOf); 6] = [
        ("all f16", |_| Precision::F16),
        ("all int8", |_| Precision::Int8),
        ("all nf4", |_| Precision::Nf4),
        ("attention int8, MLP nf4, head f16", |id| match id.kind {
            LayerKind::Output => Precision::F16,
            LayerKind::FfnGate | LayerKind::FfnUp | LayerKind::FfnDown => Precision::Nf4,
            _ => Precision::Int8,
        }),
        ("even blocks f16, odd nf4, head int8", |id| match id.block {
            None => Precision::Int8,
            Some(b) if b % 2 == 0 => Precision::F16,
            Some(_) => Precision::Nf4,
        }),
        // every group split, in formats the split plans that priced it did not pair
        ("q and up nf4, the rest int8", |id| match id.kind {
            LayerKind::AttnQ | LayerKind::FfnUp => Precision::Nf4,
            _ => Precision::Int8,
        }),
    ];
    let ids = loaded.model.layer_ids();
    for (name, pick) in plans {
        let plan = ids.iter().map(|&id| (id, pick(id)));
        let (predicted, measured) = predicted_and_measured(&tm, &mut loaded.model, plan, &feed)?;
        println!(
            "{name}: predicted {predicted:.1} µs a token, measured {measured:.1}, predicted/measured {:.3}",
            predicted / measured
        );
    }
    Ok(())
}

/// MODEL's time model, then the uniform plans (every linear, the head included, in one format)
/// and each plan file: three rounds in one process, each plan applied over the previous one, then
/// each plan with the model loaded afresh.
pub fn check_plans(dev: &Device, spec: &str, files: &[String]) -> minilab::Result<()> {
    let spec = ModelSpec::parse(spec)?;
    let dtype = if dev.is_cpu() { DType::F32 } else { DType::BF16 };
    let mut plans: Vec<(String, PrecisionPlan)> = [Precision::Int8, Precision::Nf4]
        .into_iter()
        .map(|p| (format!("all {p}"), PrecisionPlan { default: p, output: p, overrides: vec![] }))
        .collect();
    for f in files {
        plans.push((f.clone(), PrecisionPlan::from_file(std::path::Path::new(f))?));
    }
    let mut loaded = model::load(&spec, dev, dtype)?;
    let feed = feed(&loaded.model);
    let tm = time_model(&mut loaded.model, &feed)?;
    println!("time model: f16 step {:.1} µs, fixed {:.1} µs", tm.f16_step_us, tm.fixed_us);
    println!("| round | plan | predicted µs | measured µs | predicted / measured |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let ids = loaded.model.layer_ids();
    let row = |round: &str, name: &str, m: &mut Model, plan: &PrecisionPlan| -> minilab::Result<()> {
        let (predicted, measured) = predicted_and_measured(&tm, m, plan.resolve(&ids, name)?, &feed)?;
        println!("| {round} | {name} | {predicted:.1} | {measured:.1} | {:.3} |", predicted / measured);
        Ok(())
    };
    for round in 1..=3 {
        for (name, plan) in &plans {
            row(&round.to_string(), name, &mut loaded.model, plan)?;
        }
    }
    drop(loaded);
    for (name, plan) in &plans {
        let mut fresh = model::load(&spec, dev, dtype)?;
        row("fresh", name, &mut fresh.model, plan)?;
    }
    Ok(())
}
