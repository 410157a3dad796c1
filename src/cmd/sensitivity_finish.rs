//! The second half of `minilab sensitivity`: allocation, held-out validation, baselines, the
//! frontier sweep and the output files.

use super::sensitivity::SensitivityArgs;
use super::Setup;
use crate::error::{Error, Result};
use crate::model::{LayerId, Model};
use crate::plan::PrecisionPlan;
use crate::quant::Precision;
use crate::report::frontier::{FrontierPoint, PointKind};
use crate::sensitivity::allocate::{self, Allocation, LayerOptions};
use crate::sensitivity::journal::Header;
use crate::sensitivity::scan::ScanItem;
use crate::sensitivity::summary::{Baseline, Predicted, Summary};
use crate::sensitivity::validate::{self, HeldOut, Measured, SpeedOpts};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What the first half hands over.
pub struct Context<'a> {
    pub setup: &'a Setup,
    pub header: &'a Header,
    pub args: &'a SensitivityArgs,
    pub budget: u64,
    pub formats: &'a [Precision],
    pub strategy: &'a str,
    pub points: usize,
    pub out: &'a Path,
    pub held: Vec<Vec<u32>>,
    pub items: Vec<ScanItem>,
}

fn allocate_with(strategy: &str, layers: &[LayerOptions], fixed: u64, budget: u64) -> Result<Allocation> {
    let r = if strategy == "optimal" {
        allocate::optimal(layers, fixed, budget)
    } else {
        allocate::greedy(layers, fixed, budget)
    };
    r.map_err(|e| Error::input(format!("--budget-gb: {e}")))
}

fn point(label: &str, kind: PointKind, budget: Option<u64>, m: &Measured) -> FrontierPoint {
    let k = m.summary.kld.clone().unwrap_or(crate::eval::KldStats {
        mean: 0.0,
        mean_stderr: 0.0,
        median: 0.0,
        p99: 0.0,
        max: 0.0,
        top1_agreement: 1.0,
    });
    FrontierPoint {
        label: label.into(),
        kind,
        budget_bytes: budget,
        weight_bytes: m.weight_bytes,
        device_bytes: Some(m.resident_bytes),
        ppl: m.summary.ppl,
        ppl_stderr: m.summary.ppl_stderr,
        kld_mean: k.mean,
        kld_p99: k.p99,
        top1: k.top1_agreement,
        prefill_tps: m.prefill_tps,
        decode_tps: m.decode_tps,
    }
}

/// Layers in model order upgraded to `p` while the plan fits: the "int8 where it fits" baseline.
pub fn fill_in_order(layers: &[LayerOptions], fixed: u64, budget: u64, p: Precision) -> Vec<usize> {
    let cheapest: Vec<usize> =
        layers.iter().map(|l| (0..l.choices.len()).min_by_key(|&c| l.choices[c].bytes).unwrap_or(0)).collect();
    let mut choice = cheapest;
    let mut bytes = allocate::plan_bytes(layers, fixed, &choice);
    for (i, l) in layers.iter().enumerate() {
        if let Some(c) = l.choices.iter().position(|c| c.precision == p) {
            let extra = l.choices[c].bytes.saturating_sub(l.choices[choice[i]].bytes);
            if bytes + extra <= budget {
                bytes += extra;
                choice[i] = c;
            }
        }
    }
    choice
}

/// Runs the phases after the scan and writes every output file.
pub fn finish(model: &mut Model, ctx: Context, mut phases: BTreeMap<String, f64>) -> Result<()> {
    let t = Instant::now();
    let layers = validate::layer_options(model, &ctx.items, ctx.formats).map_err(Error::Runtime)?;
    let fixed = model.fixed_bytes();
    let greedy = allocate_with("greedy", &layers, fixed, ctx.budget)?;
    let optimal = allocate_with("optimal", &layers, fixed, ctx.budget)?;
    let chosen = if ctx.strategy == "optimal" { optimal.clone() } else { greedy.clone() };
    let assignment = validate::assignment_of(&layers, &chosen.choice);
    phases.insert("allocate".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    // All layers are f16 here (the scan restores every layer it touches).
    let held = validate::held_out(model, ctx.held.clone(), ctx.args.kld_topk)?;
    let all =
        |p: Precision| -> BTreeMap<LayerId, Precision> { model.layer_ids().into_iter().map(|id| (id, p)).collect() };
    let f16 = validate::measure(model, &held, &all(Precision::F16), None, "f16")?;
    let measured = validate::measure(model, &held, &assignment, None, "chosen")?;
    phases.insert("validate".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let baselines = baselines(model, &held, &layers, fixed, &chosen, ctx.budget, ctx.args.baselines)?;
    phases.insert("baselines".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let speed = speed_opts(&ctx, &held);
    let points = frontier(model, &held, &layers, fixed, &ctx, &chosen, &measured, speed.as_ref())?;
    phases.insert("frontier".into(), t.elapsed().as_secs_f64());

    let mut notes: Vec<String> = [&greedy.note, &optimal.note].into_iter().flatten().cloned().collect();
    let pred = chosen.predicted;
    let kld = measured.summary.kld.as_ref().map_or(0.0, |k| k.mean);
    // Summed single-layer scores ignore interactions; say so when reality is far off.
    if kld > 2.0 * pred.max(1e-6) && kld - pred > 0.01 {
        notes.push(format!("measured held-out KLD {kld:.4} is more than twice the predicted {pred:.4}: layer errors compound, so the sum of single-layer scores underestimates the damage of this plan"));
    }
    let summary = Summary {
        model: ctx.setup.spec.short_name(),
        settings_hash: ctx.header.settings_hash.clone(),
        settings: ctx.header.settings.clone(),
        budget_bytes: ctx.budget,
        plan_weight_bytes: chosen.bytes,
        min_bytes: allocate::plan_bytes(&layers, fixed, &fill_in_order(&layers, fixed, 0, Precision::F16)),
        max_bytes: allocate::plan_bytes(&layers, fixed, &vec![0; layers.len()]),
        strategy: ctx.strategy.to_string(),
        predicted: Predicted {
            greedy: greedy.predicted,
            optimal: optimal.predicted,
            gap: greedy.predicted - optimal.predicted,
            chosen: pred,
        },
        measured: measured.summary.clone(),
        f16: f16.summary.clone(),
        formats: count_formats(&assignment),
        baselines,
        phases_s: phases,
        notes,
    };
    let metric = ctx.header.settings["metric"].as_str().unwrap_or("kld");
    let exports = crate::export::plan_files(&assignment, model.config(), &layers, fixed, metric)?;
    write_outputs(&ctx, &summary, &assignment, &points, &exports)
}

fn count_formats(a: &BTreeMap<LayerId, Precision>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in a.values() {
        *m.entry(p.name().to_string()).or_default() += 1;
    }
    m
}

fn speed_opts(ctx: &Context, held: &HeldOut) -> Option<SpeedOpts> {
    if ctx.args.no_speed {
        return None;
    }
    let feed: Vec<u32> = held.windows.concat();
    (feed.len() >= 512).then(|| SpeedOpts { feed, n_prompt: 512, n_gen: 128, reps: ctx.args.bench_reps.max(1) })
}

fn baselines(
    model: &mut Model,
    held: &HeldOut,
    layers: &[LayerOptions],
    fixed: u64,
    chosen: &Allocation,
    budget: u64,
    n: usize,
) -> Result<Vec<Baseline>> {
    let mut out = Vec::new();
    let mut measure = |label: String, choice: &[usize]| -> Result<()> {
        let m = validate::measure(model, held, &validate::assignment_of(layers, choice), None, &label)?;
        out.push(Baseline {
            label,
            weight_bytes: m.weight_bytes,
            kld_mean: m.summary.kld.map_or(0.0, |k| k.mean),
            ppl: m.summary.ppl,
        });
        Ok(())
    };
    for seed in 0..n as u64 {
        match allocate::random_plan_of_size(layers, fixed, chosen.bytes, 0.02, seed) {
            Ok(a) => measure(format!("random #{seed}"), &a.choice)?,
            Err(e) => tracing::warn!("random baseline {seed}: {e}"),
        }
    }
    if let Some(p) = [Precision::Int8].into_iter().find(|p| layers[0].choices.iter().any(|c| c.precision == *p)) {
        // "no fewer bytes" than the chosen plan: the fill may use the whole budget
        measure(format!("{p} where it fits"), &fill_in_order(layers, fixed, budget, p))?;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn frontier(
    model: &mut Model,
    held: &HeldOut,
    layers: &[LayerOptions],
    fixed: u64,
    ctx: &Context,
    chosen: &Allocation,
    _m: &Measured,
    speed: Option<&SpeedOpts>,
) -> Result<Vec<FrontierPoint>> {
    let mut points = Vec::new();
    let ids = model.layer_ids();
    for p in std::iter::once(Precision::F16).chain(ctx.formats.iter().copied()) {
        let a: BTreeMap<LayerId, Precision> = ids.iter().map(|id| (*id, p)).collect();
        let m = validate::measure(model, held, &a, speed, &format!("all {p}"))?;
        points.push(point(&format!("all {p}"), PointKind::Uniform, None, &m));
    }
    let min = points.iter().map(|p| p.weight_bytes).min().unwrap_or(fixed);
    let max = points.iter().map(|p| p.weight_bytes).max().unwrap_or(fixed);
    for i in 1..=ctx.points {
        let budget = min + (max - min) * i as u64 / (ctx.points as u64 + 1);
        let a = allocate_with(ctx.strategy, layers, fixed, budget)?;
        let m =
            validate::measure(model, held, &validate::assignment_of(layers, &a.choice), speed, &format!("budget {i}"))?;
        points.push(point(&format!("{:.3} GB", budget as f64 / 1e9), PointKind::Budget, Some(budget), &m));
    }
    let m = validate::measure(model, held, &validate::assignment_of(layers, &chosen.choice), speed, "chosen")?;
    points.push(point(&format!("{:.3} GB budget", ctx.budget as f64 / 1e9), PointKind::Chosen, Some(ctx.budget), &m));
    Ok(points)
}

fn write_outputs(
    ctx: &Context,
    summary: &Summary,
    assignment: &BTreeMap<LayerId, Precision>,
    points: &[FrontierPoint],
    exports: &[(String, Vec<u8>)],
) -> Result<()> {
    let w = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = ctx.out.join(name);
        crate::report::write_atomic(&p, bytes).map_err(|e| Error::io(&p, e))
    };
    let header = format!(
        "minilab sensitivity plan for {} (budget {:.3} GB, {} bytes)\nstrategy {}; predicted score {:.6}",
        summary.model,
        summary.budget_bytes as f64 / 1e9,
        summary.plan_weight_bytes,
        summary.strategy,
        summary.predicted.chosen
    );
    w("plan.yaml", PrecisionPlan::to_yaml(assignment, &header).as_bytes())?;
    for (name, bytes) in exports {
        w(name, bytes)?;
    }
    let p = ctx.out.join("frontier.csv");
    crate::report::frontier::write_frontier_csv(&p, points).map_err(|e| Error::Runtime(e.to_string()))?;
    w("summary.json", serde_json::to_string_pretty(summary).map_err(|e| Error::Runtime(e.to_string()))?.as_bytes())?;
    crate::report::run::render(ctx.out)?;
    println!("{}", crate::report::run::console_summary(summary));
    Ok(())
}
