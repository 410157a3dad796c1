//! A decode-time model: the cost of one batch-1 token in any plan, predicted from GEMV times
//! measured on the device plus the step's fixed cost (attention, norms, embedding, launches).
//!
//! Timing a layer alone flatters it: the same few megabytes stay in cache from one call to the
//! next, while a real step streams every weight once. So each format is timed as a pass per layer
//! shape (which shapes cost what), and as its uniform decode step, each run paired with a pass over
//! every linear in model order timed just before it (a slow minute of a shared machine shifts both
//! and cancels in the difference). On a GPU where decode replays a CUDA graph, each pass is timed
//! as a graph too, so that neither side carries host launch costs the other does not.
//!
//! A pass is still not the step's linears: on a 2-core CPU an all-f16 pass outlasted the whole
//! f16 step (its fixed cost came out negative, so zero) while int8 and NF4 steps took 1.2–1.3 ms
//! more than their passes (issue 11 session 27). So the fixed cost is the median over the formats
//! of their step less their pass, and each format's per-shape times are scaled so that its uniform
//! step is predicted exactly ([`calibrate`]). A mixed plan's prediction is then the fixed cost plus
//! its layers' times, plus what each block pays where a plan splits a fused group of its layers
//! (q/k/v, gate/up) across formats ([`split`]).

mod split;

pub use split::{split_groups, Group, SplitCost};

use crate::device::sync;
use crate::error::{Error, Result};
use crate::model::{LayerId, Model};
use crate::quant::Precision;
use candle_core::{Module, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

/// Raised when a cached time model of an earlier minilab no longer holds: 2 when the default decode
/// step folded its norms where no linear was NF4, 3 when it folded them the stats way in every
/// format, 4 since every format's uniform step calibrates the model, 5 since split fused groups are
/// charged ([`SplitCost`]), 6 since such groups take one launch on the GPU (gemv_mixed.cuh): a
/// charge measured before no longer holds.
const TIME_MODEL_VERSION: u32 = 6;

/// What a time model was measured on; a cached model is reused only when all of it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeKey {
    /// `cpu`, or the GPU's ordinal and model name.
    pub device: String,
    /// minilab's version and features, and the time model's own version: kernels change between
    /// builds, and what a step launches changed with the norm fold (issue 11 session 26).
    pub build: String,
    pub dtype: String,
    pub threads: usize,
    /// The model's shape (blocks, hidden size, heads, vocabulary).
    pub model: String,
    /// The kernel settings in effect (`MINILAB_*=value`, [`crate::env_vars::in_effect`]): they change
    /// what a step launches as much as a build does.
    #[serde(default)]
    pub settings: Vec<String>,
}

impl TimeKey {
    /// The key of `model` as it runs now.
    pub fn of(model: &Model) -> Self {
        let c = model.config();
        Self {
            device: crate::device::hardware_name(model.device()),
            build: format!(
                "minilab {}{} (time model {TIME_MODEL_VERSION})",
                env!("CARGO_PKG_VERSION"),
                if cfg!(feature = "cuda") { " +cuda" } else { "" }
            ),
            dtype: format!("{:?}", model.dtype()).to_lowercase(),
            threads: candle_core::utils::get_num_threads(),
            model: format!(
                "blocks {} hidden {} ffn {} heads {}/{} vocab {}",
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                c.num_attention_heads,
                c.num_key_value_heads,
                c.vocab_size
            ),
            settings: crate::env_vars::in_effect(),
        }
    }
}

/// Batch-1 time of one linear of a shape in a format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearTime {
    pub out_features: usize,
    pub in_features: usize,
    pub precision: Precision,
    /// Median over the repetitions, scaled so that the format's uniform step is predicted ([`calibrate`]), µs.
    pub us: f64,
    /// Largest minus smallest repetition, µs (before scaling).
    pub spread_us: f64,
}

/// Measured decode costs of one model on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeModel {
    pub key: TimeKey,
    pub linears: Vec<LinearTime>,
    /// Median all-f16 decode step over `n_gen` tokens from an empty cache, µs.
    pub f16_step_us: f64,
    /// What every plan pays per token besides its linears, µs ([`calibrate`]).
    pub fixed_us: f64,
    /// Each format's uniform step and pass, which calibrate the linears' times.
    #[serde(default)]
    pub steps: Vec<FormatStep>,
    /// What a block pays for each fused group a plan splits across formats.
    #[serde(default)]
    pub splits: SplitCost,
    /// Decode steps per timed run (tgN).
    pub n_gen: usize,
    pub reps: usize,
}

/// One format's uniform decode step, µs per token: medians over runs each paired with a pass over
/// every linear timed just before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormatStep {
    pub precision: Precision,
    pub step_us: f64,
    pub pass_us: f64,
    /// The median over the runs of step less pass.
    pub fixed_us: f64,
}

/// Fewest paired (pass, decode) runs behind the fixed cost, whatever `reps` says.
const MIN_STEP_REPS: usize = 3;

/// The shapes of a model's linears, each with the layers that have it.
fn by_shape(model: &Model) -> BTreeMap<(usize, usize), Vec<LayerId>> {
    let mut m: BTreeMap<(usize, usize), Vec<LayerId>> = BTreeMap::new();
    for id in model.layer_ids() {
        if let Some(l) = model.linear(id) {
            m.entry(l.shape()).or_default().push(id);
        }
    }
    m
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and spread of `reps` timed passes (after one warm-up) of every layer in `ids` on its
/// own input, in µs per pass: replays of one captured graph where decode takes one.
fn time_pass(model: &Model, ids: &[LayerId], inputs: &BTreeMap<usize, Tensor>, reps: usize) -> Result<(f64, f64)> {
    let layers = ids
        .iter()
        .map(|id| model.linear(*id).ok_or_else(|| Error::Runtime(format!("no layer {id}"))))
        .collect::<Result<Vec<_>>>()?;
    let pass = || -> candle_core::Result<()> {
        for l in &layers {
            std::hint::black_box(l.forward(&inputs[&l.shape().1])?);
        }
        Ok(())
    };
    // An error off CUDA, with graphs or kernels off, or when the capture fails: then eager passes.
    let graph = crate::model::graph::Recorded::record(model.device(), pass).ok();
    let mut samples = Vec::with_capacity(reps);
    for r in 0..=reps {
        sync(model.device())?;
        let t = Instant::now();
        match &graph {
            Some(g) => g.replay()?,
            None => pass()?,
        }
        sync(model.device())?;
        if r > 0 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let spread = samples.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - samples.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((median(&mut samples), spread))
}

fn set_all(model: &mut Model, ids: &[LayerId], p: Precision) -> Result<()> {
    ids.iter().try_for_each(|id| model.set_precision(*id, p).map_err(Error::from))
}

/// The per-shape times of every linear in `p`, each shape's layers timed as one pass (the split of
/// the whole; [`calibrate`] scales their total to the format's step). Leaves the model in `p`.
fn time_format(
    model: &mut Model,
    p: Precision,
    shapes: &BTreeMap<(usize, usize), Vec<LayerId>>,
    inputs: &BTreeMap<usize, Tensor>,
    reps: usize,
) -> Result<Vec<LinearTime>> {
    set_all(model, &model.layer_ids(), p)?;
    let mut linears = Vec::with_capacity(shapes.len());
    for (&(o, i), ids) in shapes {
        let (us, spread) = time_pass(model, ids, inputs, reps)?;
        let n = ids.len() as f64;
        linears.push(LinearTime { out_features: o, in_features: i, precision: p, us: us / n, spread_us: spread / n });
    }
    Ok(linears)
}

/// One decode run of `gen` from an empty cache (after its warm-up), µs a token.
fn step_us(model: &Model, gen: &[u32]) -> Result<f64> {
    let ns = super::time_decode(model, &[], gen, 1, &indicatif::ProgressBar::hidden())?.samples_ns;
    Ok(ns.first().map_or(0.0, |&ns| ns as f64 / 1e3 / gen.len().max(1) as f64))
}

/// The uniform step of the format `model` is in ([`FormatStep`]) over `runs` decode runs of `gen`.
fn format_step(
    model: &Model,
    p: Precision,
    inputs: &BTreeMap<usize, Tensor>,
    gen: &[u32],
    runs: usize,
) -> Result<FormatStep> {
    let all = model.layer_ids();
    let (mut steps, mut passes, mut fixed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (pass, _) = time_pass(model, &all, inputs, 1)?;
        let step = step_us(model, gen)?;
        steps.push(step);
        passes.push(pass);
        fixed.push(step - pass);
    }
    Ok(FormatStep {
        precision: p,
        step_us: median(&mut steps),
        pass_us: median(&mut passes),
        fixed_us: median(&mut fixed),
    })
}

/// The fixed cost, and each format's linear times scaled so that a plan of that format alone is
/// predicted at its measured step: the median over `steps` of step less pass (at least 0, at most
/// 90 % of the fastest step, so that every format keeps a positive share for its linears: on a
/// small model the fixed cost is most of a step), and for
/// each format a factor (step − fixed) / (its linears' sum over the model, `counts` layers a
/// shape).
fn calibrate(linears: &mut [LinearTime], counts: &BTreeMap<(usize, usize), usize>, steps: &[FormatStep]) -> f64 {
    let mut diffs: Vec<f64> = steps.iter().map(|s| s.fixed_us).collect();
    let fastest = steps.iter().map(|s| s.step_us).fold(f64::INFINITY, f64::min);
    let fixed = median(&mut diffs).min(0.9 * fastest).max(0.0);
    for s in steps {
        let of_format = |l: &LinearTime| l.precision == s.precision;
        let shape_count = |l: &LinearTime| counts.get(&(l.out_features, l.in_features)).copied().unwrap_or(0);
        let sum: f64 = linears.iter().filter(|l| of_format(l)).map(|l| l.us * shape_count(l) as f64).sum();
        let scale = (s.step_us - fixed) / sum;
        if scale.is_finite() && scale > 0.0 {
            linears.iter_mut().filter(|l| of_format(l)).for_each(|l| l.us *= scale);
        }
    }
    if fixed.is_finite() {
        fixed
    } else {
        0.0
    }
}

impl TimeModel {
    /// Measures `formats` (f16 is always timed) and the fixed cost on `feed` (at least `n_gen`
    /// tokens). The model's layers are all f16 again afterwards.
    pub fn measure(
        model: &mut Model,
        formats: &[Precision],
        feed: &[u32],
        n_gen: usize,
        reps: usize,
        pb: &indicatif::ProgressBar,
    ) -> Result<Self> {
        let reps = reps.max(1);
        let shapes = by_shape(model);
        let mut inputs = BTreeMap::new();
        for &(_, i) in shapes.keys() {
            let x = Tensor::randn(0f32, 1.0, (1, 1, i), model.device())?.to_dtype(model.act_dtype())?;
            inputs.insert(i, x);
        }
        let mut precisions = vec![Precision::F16];
        precisions.extend(formats.iter().copied().filter(|p| *p != Precision::F16));
        let n_gen = n_gen.min(feed.len()).max(1);
        let runs = reps.max(MIN_STEP_REPS);
        let (mut linears, mut steps) = (Vec::new(), Vec::new());
        for p in precisions {
            // time_format leaves the model in p for its step
            linears.extend(time_format(model, p, &shapes, &inputs, reps)?);
            steps.push(format_step(model, p, &inputs, &feed[..n_gen], runs)?);
            pb.inc(1);
        }
        let counts = shapes.iter().map(|(&shape, ids)| (shape, ids.len())).collect();
        let fixed_us = calibrate(&mut linears, &counts, &steps);
        let f16_step_us = steps.first().map_or(0.0, |s| s.step_us);
        pb.inc(1);
        let splits = SplitCost::default();
        let mut tm = Self { key: TimeKey::of(model), linears, f16_step_us, fixed_us, steps, splits, n_gen, reps };
        // where every layer runs alone, a split group launches nothing more: what its plans would
        // measure is noise (0–53 µs a group on the 2-core CPU), which would steer the allocator
        let other = formats.iter().rev().find(|p| **p != Precision::F16);
        if let Some(&other) = other.filter(|_| crate::kernels::fuses_groups(model.device())) {
            tm.splits = tm.measure_splits(model, other, &feed[..n_gen], runs)?;
        }
        set_all(model, &model.layer_ids(), Precision::F16)?;
        pb.inc(1);
        Ok(tm)
    }

    /// Per group kind, the median step of the plan that splits that group in every block
    /// ([`Group::split_plan`], f16 beside `other`) less its predicted step with no charge, per block
    /// (at least 0). Leaves the model in the last plan.
    fn measure_splits(&self, model: &mut Model, other: Precision, gen: &[u32], runs: usize) -> Result<SplitCost> {
        let blocks = model.n_blocks().max(1) as f64;
        let mut cost = SplitCost::default();
        for g in Group::ALL {
            for id in model.layer_ids() {
                model.set_precision(id, g.split_plan(id, other))?;
            }
            let predicted = self.predict_model_us(model).unwrap_or(f64::NAN);
            let mut steps = (0..runs).map(|_| step_us(model, gen)).collect::<Result<Vec<_>>>()?;
            let excess = (median(&mut steps) - predicted) / blocks;
            cost.set(g, if excess.is_finite() { excess.max(0.0) } else { 0.0 });
        }
        Ok(cost)
    }

    /// The time of one linear of shape `(out, in)` in `p`, if measured.
    pub fn linear_us(&self, (out, inp): (usize, usize), p: Precision) -> Option<f64> {
        self.linears.iter().find(|l| l.out_features == out && l.in_features == inp && l.precision == p).map(|l| l.us)
    }

    /// Predicted µs per decoded token of a plan of `(shape, format)` layers.
    pub fn predict_us(&self, layers: impl IntoIterator<Item = ((usize, usize), Precision)>) -> Option<f64> {
        layers.into_iter().try_fold(self.fixed_us, |acc, (shape, p)| Some(acc + self.linear_us(shape, p)?))
    }

    /// Predicted µs per token of `model` in the formats it holds now.
    pub fn predict_model_us(&self, model: &Model) -> Option<f64> {
        let plan = split::model_plan(model);
        let layers = plan.iter().filter_map(|&(id, p)| model.linear(id).map(|l| (l.shape(), p)));
        Some(self.predict_us(layers)? + self.splits.charge(plan.iter().copied()))
    }

    /// Every figure finite and non-negative (a cached file is untrusted input).
    pub fn check(&self) -> std::result::Result<(), String> {
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        let step_ok = |s: &FormatStep| ok(s.step_us) && ok(s.pass_us) && s.fixed_us.is_finite();
        if !(ok(self.f16_step_us) && ok(self.fixed_us) && self.steps.iter().all(step_ok) && self.splits.is_sane())
            || self.linears.iter().any(|l| !(ok(l.us) && ok(l.spread_us)))
        {
            return Err("a time that is not a non-negative number".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tm() -> TimeModel {
        let key = TimeKey {
            device: "cpu".into(),
            build: "b".into(),
            dtype: "f32".into(),
            threads: 2,
            model: "m".into(),
            settings: vec![],
        };
        let lt = |o, i, precision, us| LinearTime { out_features: o, in_features: i, precision, us, spread_us: 0.1 };
        TimeModel {
            key,
            linears: vec![lt(8, 4, Precision::F16, 10.0), lt(8, 4, Precision::Nf4, 4.0), lt(4, 8, Precision::F16, 6.0)],
            f16_step_us: 50.0,
            fixed_us: 20.0,
            steps: vec![],
            splits: SplitCost::default(),
            n_gen: 16,
            reps: 2,
        }
    }

    #[test]
    fn a_prediction_is_the_fixed_cost_plus_each_layer() {
        let t = tm();
        assert_eq!(
            t.predict_us([((8, 4), Precision::F16), ((8, 4), Precision::Nf4), ((4, 8), Precision::F16)]),
            Some(40.0)
        );
        assert_eq!(t.predict_us([((4, 8), Precision::Nf4)]), None, "an unmeasured format predicts nothing");
        assert_eq!(t.check(), Ok(()));
        let mut bad = t.clone();
        bad.linears[1].us = f64::NAN;
        assert!(bad.check().is_err());
        let mut bad = t.clone();
        bad.fixed_us = -1.0;
        assert!(bad.check().is_err());
    }

    fn step(precision: Precision, step_us: f64, pass_us: f64) -> FormatStep {
        FormatStep { precision, step_us, pass_us, fixed_us: step_us - pass_us }
    }

    /// The demo's medians on the 2-core VM (session 26, µs scaled down): an f16 pass longer than the
    /// f16 step, int8 and NF4 steps 1.2–1.3 past their passes. The fixed cost is the middle one,
    /// each uniform plan is predicted at its step, and a mixed plan between its formats' uniform ones.
    #[test]
    fn calibration_predicts_each_uniform_step() {
        use Precision::*;
        let counts = BTreeMap::from([((8, 4), 2), ((4, 8), 1)]);
        let lt = |o, i, precision, us| LinearTime { out_features: o, in_features: i, precision, us, spread_us: 0.0 };
        // passes: f16 21.6, int8 6.23, nf4 4.67
        let mut linears = vec![
            lt(8, 4, F16, 8.0),
            lt(4, 8, F16, 5.6),
            lt(8, 4, Int8, 2.0),
            lt(4, 8, Int8, 2.23),
            lt(8, 4, Nf4, 1.5),
            lt(4, 8, Nf4, 1.67),
        ];
        let steps = vec![step(F16, 18.49, 21.6), step(Int8, 7.43, 6.23), step(Nf4, 6.0, 4.67)];
        let fixed = calibrate(&mut linears, &counts, &steps);
        assert!((fixed - 1.2).abs() < 1e-9, "fixed {fixed}");
        let t = TimeModel { linears, fixed_us: fixed, steps: steps.clone(), ..tm() };
        let uniform = |p| [((8, 4), p), ((8, 4), p), ((4, 8), p)];
        for s in &steps {
            let got = t.predict_us(uniform(s.precision)).expect("measured");
            assert!((got - s.step_us).abs() < 1e-9, "{}: {got} against {}", s.precision, s.step_us);
        }
        let mixed = t.predict_us([((8, 4), Int8), ((8, 4), Int8), ((4, 8), Nf4)]).expect("measured");
        assert!(mixed > 6.0 && mixed < 7.43, "{mixed}");
        assert_eq!(t.check(), Ok(()));
    }

    /// A fixed cost is never negative, nor so large that a format's linears would cost nothing.
    #[test]
    fn calibration_keeps_the_fixed_cost_in_bounds() {
        let counts = BTreeMap::from([((8, 4), 1)]);
        let lt = |us| LinearTime { out_features: 8, in_features: 4, precision: Precision::Int8, us, spread_us: 0.0 };
        let mut linears = vec![lt(0.1)];
        let fixed = calibrate(&mut linears, &counts, &[step(Precision::Int8, 2.0, 0.1)]);
        assert!((fixed - 1.8).abs() < 1e-9 && (linears[0].us - 0.2).abs() < 1e-9, "{fixed} {}", linears[0].us);
        let mut linears = vec![lt(3.0)];
        assert_eq!(calibrate(&mut linears, &counts, &[step(Precision::Int8, 2.0, 3.0)]), 0.0);
        assert!((linears[0].us - 2.0).abs() < 1e-9);
        // no steps: nothing scaled, no fixed cost
        let mut linears = vec![lt(3.0)];
        assert_eq!(calibrate(&mut linears, &counts, &[]), 0.0);
        assert_eq!(linears[0].us, 3.0);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
