//! The speed-aware stage: a decode-time model measured on the device (cached in the run folder),
//! the allocator's per-layer times, and how close its predictions came to measured speeds.

use super::allocate::LayerOptions;
use super::settings::Settings;
use super::summary::SpeedSummary;
use crate::bench::time_model::{TimeKey, TimeModel};
use crate::error::{Error, Result};
use crate::model::{LayerId, Model};
use crate::report::frontier::{FrontierPoint, PointKind};
use std::path::Path;

/// The cached time model inside a run folder.
pub const FILE: &str = "time_model.json";
/// Decode steps the fixed cost is measured over: tg128, as the frontier's speed.
const N_GEN: usize = 128;

/// The time model for this run: the cached one when it was measured for this device, build,
/// dtype, model and formats, else a new measurement (written to the run folder). `None` when
/// the run needs none. The model is all-f16 on return.
pub fn time_model(model: &mut Model, s: &Settings, feed: &[u32]) -> Result<Option<TimeModel>> {
    if !s.wants_time_model() {
        return Ok(None);
    }
    let path = s.out.join(FILE);
    if let Some(tm) = cached(&path, model, s) {
        tracing::info!("decode-time model from {}", path.display());
        return Ok(Some(tm));
    }
    if feed.len() < 2 {
        return Err(Error::input("the held-out text is too short to time decoding"));
    }
    let pb = crate::progress::bar(s.formats.len() as u64 + 3, "time model");
    let tm = TimeModel::measure(model, &s.formats, feed, N_GEN, s.bench_reps.max(1), &pb)?;
    pb.finish_and_clear();
    tm.check().map_err(|e| Error::Runtime(format!("decode-time model: {e}")))?;
    let json = serde_json::to_string_pretty(&tm).map_err(|e| Error::Runtime(e.to_string()))?;
    crate::report::write_atomic(&path, json.as_bytes()).map_err(|e| Error::io(&path, e))?;
    Ok(Some(tm))
}

/// A cached model, if it is readable, sane and was measured for this exact setup.
fn cached(path: &Path, model: &Model, s: &Settings) -> Option<TimeModel> {
    let text = crate::report::read_run_file(path).ok()?;
    let tm: TimeModel = serde_json::from_str(&text).ok()?;
    let shapes_known = model.layer_ids().iter().filter_map(|id| model.linear(*id)).all(|l| {
        std::iter::once(crate::quant::Precision::F16)
            .chain(s.formats.iter().copied())
            .all(|p| tm.linear_us(l.shape(), p).is_some())
    });
    (tm.key == TimeKey::of(model) && tm.check().is_ok() && shapes_known).then_some(tm)
}

/// `times[i][j]`: predicted µs of layer `i` of `layers` in its choice `j`.
pub fn layer_times(model: &Model, layers: &[LayerOptions], tm: &TimeModel) -> Result<Vec<Vec<f64>>> {
    layers
        .iter()
        .map(|l| {
            let id = LayerId::parse(&l.id).ok_or_else(|| Error::Runtime(format!("{}: not a layer id", l.id)))?;
            let shape = model.linear(id).ok_or_else(|| Error::Runtime(format!("no layer {id}")))?.shape();
            l.choices
                .iter()
                .map(|c| {
                    tm.linear_us(shape, c.precision)
                        .ok_or_else(|| Error::Runtime(format!("the time model has no {} {shape:?}", c.precision)))
                })
                .collect()
        })
        .collect()
}

/// Relative errors (%) of the predicted against the measured decode speed, over the points with both
/// that are not uniform: each format's uniform step calibrates the time model, so those points test
/// only how steady the machine was ([`drift_pct`]).
pub fn errors_pct(points: &[FrontierPoint]) -> Vec<f64> {
    rel_errors_pct(points, |k| k != PointKind::Uniform)
}

/// The same over the uniform points. Each is predicted at its own step as the time model timed it,
/// minutes before, so what remains is the machine's drift: on a shared 2-core VM they moved 1–30 %
/// within one run (issue 11 session 30), and mixed points' errors within that say nothing about
/// the model.
pub fn drift_pct(points: &[FrontierPoint]) -> Vec<f64> {
    rel_errors_pct(points, |k| k == PointKind::Uniform)
}

fn rel_errors_pct(points: &[FrontierPoint], kinds: impl Fn(PointKind) -> bool) -> Vec<f64> {
    let mut e: Vec<f64> = points
        .iter()
        .filter(|p| kinds(p.kind))
        .filter_map(|p| match (p.predicted_decode_tps, p.decode_tps) {
            (Some(pr), Some(m)) if m > 0.0 => Some(100.0 * (pr - m).abs() / m),
            _ => None,
        })
        .filter(|e| e.is_finite())
        .collect();
    e.sort_by(f64::total_cmp);
    e
}

/// The median of sorted `v`, if any.
fn median(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The summary's speed section; `chosen` is the chosen plan's frontier point.
pub fn summary(tm: &TimeModel, s: &Settings, points: &[FrontierPoint], chosen_us: f64) -> SpeedSummary {
    let e = errors_pct(points);
    let drift = drift_pct(points);
    let chosen = points.iter().find(|p| p.kind == PointKind::Chosen);
    SpeedSummary {
        max_decode_us: s.max_decode_us,
        speed_margin: s.speed_margin,
        fixed_us: tm.fixed_us,
        f16_step_us: tm.f16_step_us,
        split_qkv_us: tm.splits.qkv_us,
        split_gate_up_us: tm.splits.gate_up_us,
        predicted_decode_tps: 1e6 / chosen_us,
        measured_decode_tps: chosen.and_then(|p| p.decode_tps),
        error_pct_median: median(&e),
        error_pct_max: e.last().copied(),
        points_compared: e.len(),
        drift_pct_median: median(&drift),
        drift_pct_max: drift.last().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::frontier::PointKind;

    fn point(kind: PointKind, measured: f64, predicted: Option<f64>) -> FrontierPoint {
        FrontierPoint {
            label: format!("{kind:?}"),
            kind,
            budget_bytes: None,
            weight_bytes: 1,
            device_bytes: None,
            ppl: 1.0,
            ppl_stderr: 0.0,
            kld_mean: 0.0,
            kld_p99: 0.0,
            top1: 1.0,
            prefill_tps: None,
            decode_tps: Some(measured),
            predicted_decode_tps: predicted,
        }
    }

    /// The uniform points calibrate the time model, so only the others count as its test; a point
    /// without a prediction counts for nothing.
    #[test]
    fn errors_leave_out_the_uniform_points() {
        let points = [
            point(PointKind::Uniform, 100.0, Some(150.0)),
            point(PointKind::Budget, 100.0, Some(110.0)),
            point(PointKind::Chosen, 200.0, Some(190.0)),
            point(PointKind::Budget, 100.0, None),
        ];
        let e = errors_pct(&points);
        assert_eq!(e.len(), 2);
        assert!((e[0] - 5.0).abs() < 1e-9 && (e[1] - 10.0).abs() < 1e-9, "sorted: {e:?}");
        let d = drift_pct(&points);
        assert_eq!(d.len(), 1);
        assert!((d[0] - 50.0).abs() < 1e-9, "{d:?}");
    }

    /// The summary carries both: the mixed points' errors and the uniform points' drift, medians
    /// and worst; no uniform point measured means no drift figure, not a zero.
    #[test]
    fn the_summary_reports_drift_beside_the_errors() {
        let tm_points = [
            point(PointKind::Uniform, 100.0, Some(104.0)),
            point(PointKind::Uniform, 100.0, Some(80.0)),
            point(PointKind::Uniform, 100.0, Some(98.0)),
            point(PointKind::Chosen, 100.0, Some(130.0)),
        ];
        let d = drift_pct(&tm_points);
        assert_eq!(median(&d), Some(4.0));
        assert_eq!(d.last().copied(), Some(20.0));
        assert_eq!(median(&drift_pct(&tm_points[3..])), None);
        assert_eq!(median(&errors_pct(&tm_points)), Some(30.0));
    }
}
