//! The stages after the scan: allocation, held-out validation, baselines, the frontier sweep and
//! the output files.

use super::allocate::{self, AllocError, Allocation, LayerOptions};
use super::journal::Header;
use super::scan::{Placement, ScanItem};
use super::settings::{Settings, Strategy};
use super::speed;
use super::summary::{Baseline, Predicted, Summary};
use super::timing::StepTimes;
use super::validate::{self, HeldOut, Measured, SpeedOpts};
use crate::bench::time_model::{SplitCost, TimeModel};
use crate::error::{Error, Result};
use crate::model::{LayerId, Model};
use crate::plan::PrecisionPlan;
use crate::quant::Precision;
use crate::report::frontier::{FrontierPoint, PointKind};
use std::collections::BTreeMap;
use std::time::Instant;

/// What the scan hands over.
pub struct Finish<'a> {
    pub settings: &'a Settings,
    pub header: &'a Header,
    pub model_name: String,
    /// Synthetic weights or text: every output says the accuracy is meaningless.
    pub synthetic: bool,
    /// Held-out windows.
    pub held: Vec<Vec<u32>>,
    pub items: Vec<ScanItem>,
    /// The scan's step times (empty after a merge or a finished resume).
    pub times: StepTimes,
    pub placement: Placement,
    /// Largest device memory reading during the scan.
    pub peak_device_bytes: u64,
}

/// A budget the allocator cannot meet, as a `--budget-gb` error (or a speed-limit error).
pub fn alloc_err(e: AllocError) -> Error {
    match e {
        AllocError::TooSlow { .. } => {
            Error::input(format!("--min-decode-tps / --max-decode-ms (planned with the --speed-margin reserve): {e}"))
        }
        e => Error::input(format!("--budget-gb: {e}")),
    }
}

/// The per-layer times and fixed cost of a speed limit, for [`allocate_timed`].
pub struct Speed<'a> {
    pub times: &'a [Vec<f64>],
    pub limit: allocate::timed::TimeLimit,
}

/// Allocates under `budget` and, when given, a speed limit.
pub fn allocate_timed(
    strategy: Strategy,
    layers: &[LayerOptions],
    fixed: u64,
    budget: u64,
    speed: Option<&Speed>,
) -> Result<Allocation> {
    let Some(sp) = speed else { return allocate_with(strategy, layers, fixed, budget) };
    let r = match strategy {
        Strategy::Optimal => allocate::timed::optimal(layers, sp.times, fixed, budget, sp.limit),
        Strategy::Greedy => allocate::timed::greedy(layers, sp.times, fixed, budget, sp.limit),
    };
    r.map_err(alloc_err)
}

/// Tries after the first at a speed limit tightened by the plan's split groups.
const SPLIT_RETRIES: usize = 4;

/// [`allocate_timed`], and under a speed limit, while the plan's split fused groups
/// ([`SplitCost`], which the allocators' per-layer sums leave out) take it past the limit: again,
/// with the limit tightened by their charge. If no plan then fits, the last one, with a warning.
fn allocate_grouped(
    strategy: Strategy,
    layers: &[LayerOptions],
    fixed: u64,
    budget: u64,
    speed: Option<&Speed>,
    split: Option<SplitCost>,
) -> Result<Allocation> {
    let mut a = allocate_timed(strategy, layers, fixed, budget, speed)?;
    let (Some(sp), Some(split)) = (speed, split) else { return Ok(a) };
    let predicted = |a: &Allocation| {
        let charge = split.charge(validate::assignment_of(layers, &a.choice));
        (allocate::timed::plan_us(sp.times, sp.limit.fixed_us, &a.choice) + charge, charge)
    };
    for _ in 0..SPLIT_RETRIES {
        let (us, charge) = predicted(&a);
        if us <= sp.limit.max_us {
            return Ok(a);
        }
        let limit = allocate::timed::TimeLimit { max_us: sp.limit.max_us - charge, ..sp.limit };
        match allocate_timed(strategy, layers, fixed, budget, Some(&Speed { times: sp.times, limit })) {
            Ok(next) => a = next,
            Err(_) => break,
        }
    }
    let (us, _) = predicted(&a);
    if us > sp.limit.max_us {
        tracing::warn!(
            "the {strategy:?} plan is predicted at {:.1} tok/s, short of the planned {:.1}: its split q/k/v and gate/up \
             groups cost more than the limit leaves",
            1e6 / us,
            1e6 / sp.limit.max_us
        );
    }
    Ok(a)
}

/// Allocates under `budget` with `strategy`.
pub fn allocate_with(strategy: Strategy, layers: &[LayerOptions], fixed: u64, budget: u64) -> Result<Allocation> {
    let r = match strategy {
        Strategy::Optimal => allocate::optimal(layers, fixed, budget),
        Strategy::Greedy => allocate::greedy(layers, fixed, budget),
    };
    r.map_err(alloc_err)
}

fn point(label: &str, kind: PointKind, budget: Option<u64>, m: &Measured, predicted_us: Option<f64>) -> FrontierPoint {
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
        predicted_decode_tps: predicted_us.map(|us| 1e6 / us),
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

/// The allocations at the user's budget (and speed limit).
struct Allocations {
    layers: Vec<LayerOptions>,
    greedy: Allocation,
    optimal: Allocation,
    chosen: Allocation,
    assignment: BTreeMap<LayerId, Precision>,
}

fn allocations(model: &Model, ctx: &Finish, tm: Option<&TimeModel>) -> Result<Allocations> {
    let s = ctx.settings;
    let layers = validate::layer_options(model, &ctx.items, &s.formats).map_err(Error::Runtime)?;
    let fixed = model.fixed_bytes();
    let timed = match (tm, s.planned_decode_us()) {
        (Some(tm), Some(max_us)) => Some((
            speed::layer_times(model, &layers, tm)?,
            // every plan's step pays the same fixed cost, whatever its formats
            allocate::timed::TimeLimit { fixed_us: tm.fixed_us, max_us },
        )),
        _ => None,
    };
    let sp = timed.as_ref().map(|(times, limit)| Speed { times, limit: *limit });
    let split = tm.map(|tm| tm.splits);
    let greedy = allocate_grouped(Strategy::Greedy, &layers, fixed, s.budget_bytes, sp.as_ref(), split)?;
    let optimal = allocate_grouped(Strategy::Optimal, &layers, fixed, s.budget_bytes, sp.as_ref(), split)?;
    let chosen = if s.strategy == Strategy::Optimal { optimal.clone() } else { greedy.clone() };
    let assignment = validate::assignment_of(&layers, &chosen.choice);
    Ok(Allocations { layers, greedy, optimal, chosen, assignment })
}

/// Runs the stages after the scan, writes every output file and returns the summary.
pub fn finish(model: &mut Model, ctx: Finish, mut phases: BTreeMap<String, f64>) -> Result<Summary> {
    let s = ctx.settings;
    let t = Instant::now();
    // Measured while every layer is f16 (the scan restores each layer it touches).
    let tm = speed::time_model(model, s, &ctx.held.concat())?;
    if tm.is_some() {
        phases.insert("time_model".into(), t.elapsed().as_secs_f64());
    }
    let t = Instant::now();
    let a = allocations(model, &ctx, tm.as_ref())?;
    let fixed = model.fixed_bytes();
    phases.insert("allocate".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let held = validate::held_out(model, ctx.held.clone(), s.kld_topk)?;
    let all =
        |p: Precision| -> BTreeMap<LayerId, Precision> { model.layer_ids().into_iter().map(|id| (id, p)).collect() };
    let f16 = validate::measure(model, &held, &all(Precision::F16), None, "f16")?;
    let measured = validate::measure(model, &held, &a.assignment, None, "chosen")?;
    let chosen_us = tm.as_ref().and_then(|tm| tm.predict_model_us(model));
    phases.insert("validate".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let baselines = baselines(model, &held, &a.layers, fixed, &a.chosen, s.budget_bytes, s.baselines)?;
    phases.insert("baselines".into(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let speed_opts = speed_opts(s, &held);
    let sweep = Sweep { held: &held, layers: &a.layers, fixed, tm: tm.as_ref(), speed: speed_opts.as_ref() };
    let points = frontier(model, &sweep, s, &a.chosen)?;
    phases.insert("frontier".into(), t.elapsed().as_secs_f64());

    let mut summary = summary(model, &ctx, &a, [measured, f16], baselines, phases);
    summary.speed = tm.as_ref().zip(chosen_us).map(|(tm, us)| speed::summary(tm, s, &points, us));
    let metric = ctx.header.settings["metric"].as_str().unwrap_or("kld");
    let exports = crate::export::plan_files(&a.assignment, model.config(), &a.layers, fixed, metric)?;
    write_outputs(&ctx, &summary, &a.assignment, &points, &exports)?;
    Ok(summary)
}

/// The summary of a finished run; `[measured, f16]`: the chosen plan and the f16 model on the
/// held-out text.
fn summary(
    model: &Model,
    ctx: &Finish,
    a: &Allocations,
    [measured, f16]: [Measured; 2],
    baselines: Vec<Baseline>,
    phases: BTreeMap<String, f64>,
) -> Summary {
    let fixed = model.fixed_bytes();
    let layers = &a.layers;
    let mut notes: Vec<String> = [&a.greedy.note, &a.optimal.note].into_iter().flatten().cloned().collect();
    let pred = a.chosen.predicted;
    let kld = measured.summary.kld.as_ref().map_or(0.0, |k| k.mean);
    // Summed single-layer scores ignore interactions; say so when reality is far off.
    if kld > 2.0 * pred.max(1e-6) && kld - pred > 0.01 {
        notes.push(format!("measured held-out KLD {kld:.4} is more than twice the predicted {pred:.4}: layer errors compound, so the sum of single-layer scores underestimates the damage of this plan"));
    }
    Summary {
        model: ctx.model_name.clone(),
        settings_hash: ctx.header.settings_hash.clone(),
        settings: ctx.header.settings.clone(),
        budget_bytes: ctx.settings.budget_bytes,
        plan_weight_bytes: a.chosen.bytes,
        min_bytes: allocate::plan_bytes(layers, fixed, &fill_in_order(layers, fixed, 0, Precision::F16)),
        max_bytes: allocate::plan_bytes(layers, fixed, &vec![0; layers.len()]),
        strategy: ctx.settings.strategy.name().to_string(),
        predicted: Predicted {
            greedy: a.greedy.predicted,
            optimal: a.optimal.predicted,
            gap: a.greedy.predicted - a.optimal.predicted,
            chosen: pred,
        },
        measured: measured.summary,
        f16: f16.summary,
        formats: count_formats(&a.assignment),
        baselines,
        phases_s: phases,
        notes,
        warning: ctx.synthetic.then(|| crate::eval::synthetic::WARNING.to_string()),
        scan_steps_s: ctx.times.seconds(),
        device: crate::device::device_name(model.device()),
        windows_per_batch: ctx.placement.windows_per_batch,
        prefix_cache: if ctx.placement.prefix_on_host { "host" } else { "device" }.into(),
        peak_device_bytes: ctx.peak_device_bytes.max(crate::bench::memory::read(model.device()).peak),
        speed: None,
    }
}

fn count_formats(a: &BTreeMap<LayerId, Precision>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in a.values() {
        *m.entry(p.name().to_string()).or_default() += 1;
    }
    m
}

fn speed_opts(s: &Settings, held: &HeldOut) -> Option<SpeedOpts> {
    if s.bench_reps == 0 {
        return None;
    }
    let feed: Vec<u32> = held.windows.concat();
    (feed.len() >= 512).then_some(SpeedOpts { feed, n_prompt: 512, n_gen: 128, reps: s.bench_reps })
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

/// What every frontier point is measured with.
struct Sweep<'a> {
    held: &'a HeldOut,
    layers: &'a [LayerOptions],
    fixed: u64,
    tm: Option<&'a TimeModel>,
    speed: Option<&'a SpeedOpts>,
}

impl Sweep<'_> {
    /// Applies `assignment`, measures it and predicts its decode time.
    fn point(
        &self,
        model: &mut Model,
        assignment: &BTreeMap<LayerId, Precision>,
        (label, kind, budget): (String, PointKind, Option<u64>),
    ) -> Result<FrontierPoint> {
        let m = validate::measure(model, self.held, assignment, self.speed, &label)?;
        let predicted = self.tm.and_then(|tm| tm.predict_model_us(model));
        Ok(point(&label, kind, budget, &m, predicted))
    }
}

fn frontier(model: &mut Model, sw: &Sweep, s: &Settings, chosen: &Allocation) -> Result<Vec<FrontierPoint>> {
    let mut points = Vec::new();
    let ids = model.layer_ids();
    for p in std::iter::once(Precision::F16).chain(s.formats.iter().copied()) {
        let a: BTreeMap<LayerId, Precision> = ids.iter().map(|id| (*id, p)).collect();
        points.push(sw.point(model, &a, (format!("all {p}"), PointKind::Uniform, None))?);
    }
    let min = points.iter().map(|p| p.weight_bytes).min().unwrap_or(sw.fixed);
    let max = points.iter().map(|p| p.weight_bytes).max().unwrap_or(sw.fixed);
    for i in 1..=s.frontier_points {
        let budget = min + (max - min) * i as u64 / (s.frontier_points as u64 + 1);
        let a = allocate_with(s.strategy, sw.layers, sw.fixed, budget)?;
        let label = format!("{:.3} GB", budget as f64 / 1e9);
        let assignment = validate::assignment_of(sw.layers, &a.choice);
        points.push(sw.point(model, &assignment, (label, PointKind::Budget, Some(budget)))?);
    }
    let b = s.budget_bytes;
    let assignment = validate::assignment_of(sw.layers, &chosen.choice);
    points.push(sw.point(
        model,
        &assignment,
        (format!("{:.3} GB budget", b as f64 / 1e9), PointKind::Chosen, Some(b)),
    )?);
    Ok(points)
}

fn write_outputs(
    ctx: &Finish,
    summary: &Summary,
    assignment: &BTreeMap<LayerId, Precision>,
    points: &[FrontierPoint],
    exports: &[(String, Vec<u8>)],
) -> Result<()> {
    if let Some(field) = summary.first_non_finite() {
        return Err(Error::Runtime(format!(
            "the run produced a non-finite {field}: the model's outputs overflowed or are not numbers \
             (try --dtype f32); nothing was written"
        )));
    }
    let w = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = ctx.settings.out.join(name);
        crate::report::write_atomic(&p, bytes).map_err(|e| Error::io(&p, e))
    };
    let warning = summary.warning.as_ref().map_or(String::new(), |w| format!("{}\n", w.to_uppercase()));
    let header = format!(
        "{warning}minilab sensitivity plan for {} (budget {:.3} GB, {} bytes)\nstrategy {}; predicted score {:.6}",
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
    let p = ctx.settings.out.join("frontier.csv");
    crate::report::frontier::write_frontier_csv(&p, points).map_err(|e| Error::Runtime(e.to_string()))?;
    w("summary.json", serde_json::to_string_pretty(summary).map_err(|e| Error::Runtime(e.to_string()))?.as_bytes())?;
    crate::report::run::render(&ctx.settings.out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocate::{timed::TimeLimit, Choice};

    /// q, k, v of one block, each f16 (200 bytes, 10 µs) or NF4 (50 bytes, 3 µs); q the most
    /// sensitive. The budget buys q in f16, which splits the group.
    fn qkv() -> (Vec<LayerOptions>, Vec<Vec<f64>>) {
        let layers = [("attn_q", 1.0), ("attn_k", 0.1), ("attn_v", 0.1)]
            .map(|(kind, score)| LayerOptions {
                id: format!("blk.0.{kind}"),
                choices: vec![
                    Choice { precision: Precision::F16, bytes: 200, score: 0.0 },
                    Choice { precision: Precision::Nf4, bytes: 50, score },
                ],
            })
            .to_vec();
        (layers, vec![vec![10.0, 3.0]; 3])
    }

    #[test]
    fn a_split_group_that_breaks_the_speed_limit_is_planned_again() {
        let (layers, times) = qkv();
        let speed = Speed { times: &times, limit: TimeLimit { fixed_us: 0.0, max_us: 20.0 } };
        for strategy in [Strategy::Greedy, Strategy::Optimal] {
            // without a charge, q in f16 (16 µs) meets the limit
            let free = allocate_grouped(strategy, &layers, 0, 300, Some(&speed), Some(SplitCost::default())).unwrap();
            assert_eq!(free.choice, [0, 1, 1], "{strategy:?}");
            // charged 8 µs for the split (24 µs), the plan keeps the group whole: all NF4, 9 µs
            let split = SplitCost { qkv_us: 8.0, gate_up_us: 0.0 };
            let a = allocate_grouped(strategy, &layers, 0, 300, Some(&speed), Some(split)).unwrap();
            assert_eq!(a.choice, [1, 1, 1], "{strategy:?}");
            // a charge within the limit changes nothing
            let cheap = SplitCost { qkv_us: 3.0, gate_up_us: 0.0 };
            let a = allocate_grouped(strategy, &layers, 0, 300, Some(&speed), Some(cheap)).unwrap();
            assert_eq!(a.choice, [0, 1, 1], "{strategy:?}");
            // no speed limit: memory alone decides, whatever the charge
            let a = allocate_grouped(strategy, &layers, 0, 300, None, Some(split)).unwrap();
            assert_eq!(a.choice, [0, 1, 1], "{strategy:?}");
        }
    }
}
