//! Frontier plots: held-out KLD against weight memory and against decode speed (SVG, plotters).
//!
//! Conventions: y is the mean KLD against the all-f16 model, on a log axis when the positive values
//! span more than 100× (a `0` tick below the decades then holds the exact-zero f16 reference), else
//! linear; the axis title says which. Pareto-optimal points get a green ring and are joined by a
//! line; uniform configs are black triangles with their labels; the chosen plan is a large red dot.

use super::frontier::{pareto_front, FrontierPoint, PointKind};
use super::{write_atomic, ReportError};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

pub(crate) const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 680);
/// Font sizes as plotters takes them; the SVG backend writes `size / 1.24` px.
pub(crate) const TITLE_PT: i32 = 27;
pub(crate) const DESC_PT: i32 = 20;
pub(crate) const TICK_PT: i32 = 17;
const LABEL_PT: i32 = 17;
const PARETO: RGBColor = RGBColor(0, 150, 70);
const BUDGET: RGBColor = RGBColor(40, 90, 200);
const CHOSEN: RGBColor = RGBColor(220, 30, 30);
const RANDOM: RGBColor = RGBColor(130, 130, 130);

/// An f64 axis whose ticks are exactly `keys` (plotters' `WithKeyPoints` cannot take a label
/// formatter over f64). Only bold ticks: no light grid lines.
#[derive(Clone)]
pub(crate) struct Ticked {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) keys: Vec<f64>,
}

impl Ranged for Ticked {
    type ValueType = f64;
    type FormatOption = DefaultFormatting;

    fn map(&self, v: &f64, (a, b): (i32, i32)) -> i32 {
        a + ((v - self.lo) / (self.hi - self.lo) * (b - a) as f64).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

/// The KLD axis: linear, or log10 with a separate `0` tick for exact zeros.
struct YAxis {
    log: bool,
    zero_at: f64,
    range: (f64, f64),
    ticks: Vec<f64>,
}

impl YAxis {
    fn new(ys: &[f64]) -> Self {
        let pos: Vec<f64> = ys.iter().copied().filter(|&y| y > 0.0).collect();
        let (lo, hi) = pos.iter().fold((f64::INFINITY, 0.0f64), |(a, b), &y| (a.min(y), b.max(y)));
        if pos.is_empty() || hi / lo <= 100.0 {
            let lo = ys.iter().copied().fold(0.0, f64::min);
            let hi = if hi > 0.0 { hi * 1.08 } else { 1.0 };
            return Self { log: false, zero_at: 0.0, range: (lo, hi), ticks: nice_ticks(lo, hi, 7) };
        }
        let (d0, top) = (lo.log10().floor(), hi.log10() + 0.3);
        let mut ticks: Vec<f64> = (d0 as i32..=top.floor() as i32).map(f64::from).collect();
        let has_zero = ys.iter().any(|&y| y <= 0.0);
        let zero_at = d0 - 0.6;
        if has_zero {
            ticks.insert(0, zero_at);
        }
        let bottom = if has_zero { zero_at - 0.25 } else { d0 - 0.1 };
        Self { log: true, zero_at, range: (bottom, top), ticks }
    }

    fn pos(&self, y: f64) -> f64 {
        match (self.log, y > 0.0) {
            (true, true) => y.log10(),
            (true, false) => self.zero_at,
            _ => y,
        }
    }

    fn tick_label(&self, t: f64) -> String {
        if !self.log {
            return tick_text(&self.ticks, t);
        }
        if (t - self.zero_at).abs() < 1e-9 {
            "0".into()
        } else {
            format!("1e{}", t.round() as i32)
        }
    }

    fn caption(&self) -> &'static str {
        if self.log {
            "held-out KLD vs f16, mean (nats, log scale)"
        } else {
            "held-out KLD vs f16, mean (nats, linear scale)"
        }
    }
}

/// A linear tick with just the decimals its step needs (0.025 → 3, 0.05 → 2, 20 → 0).
pub(crate) fn tick_text(ticks: &[f64], t: f64) -> String {
    let step = ticks.windows(2).map(|w| w[1] - w[0]).next().unwrap_or(1.0).abs();
    let exact = |d: i32| {
        let v = step * 10f64.powi(d);
        (v - v.round()).abs() < 1e-6 * v.max(1.0)
    };
    let decimals = (0..12).find(|&d| exact(d)).unwrap_or(12) as usize;
    format!("{t:.decimals$}")
}

/// At most about `n` round tick values (1, 2, 2.5 or 5 × 10^k apart) covering `lo..hi`.
pub(crate) fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo).max(f64::MIN_POSITIVE) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].into_iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    (first..).map(|k| k as f64 * step).take_while(|&t| t <= hi + step * 1e-9).collect()
}

/// What distinguishes the two frontier plots.
struct Spec<'a> {
    title: &'a str,
    x_caption: &'a str,
    xs: Vec<Option<f64>>,
    x_higher_is_better: bool,
    /// Shown under the x axis (e.g. how many points lack this measurement).
    note: Option<String>,
}

/// Accuracy vs weight memory: x = plan weight bytes in GB (10⁹ bytes), lower is better.
pub fn plot_frontier_memory(path: &Path, points: &[FrontierPoint]) -> Result<(), ReportError> {
    let spec = Spec {
        title: "Accuracy vs memory: held-out KLD by weight size",
        x_caption: "weight memory (GB = 10⁹ bytes, embeddings and norms included)",
        xs: points.iter().map(|p| Some(p.weight_bytes as f64 / 1e9)).collect(),
        x_higher_is_better: false,
        note: None,
    };
    let svg = render_frontier(&spec, points).map_err(ReportError::plot(path))?;
    write_atomic(path, svg.as_bytes()).map_err(ReportError::io(path))
}

/// Accuracy vs decode speed: x = tg128 decode tokens/s, higher is better. Points without a decode
/// measurement are left out and counted in a note under the axis.
pub fn plot_frontier_speed(path: &Path, points: &[FrontierPoint]) -> Result<(), ReportError> {
    let xs: Vec<Option<f64>> = points.iter().map(|p| p.decode_tps).collect();
    let missing = xs.iter().filter(|x| !x.is_some_and(f64::is_finite)).count();
    let spec = Spec {
        title: "Accuracy vs speed: held-out KLD by decode tokens/s",
        x_caption: "decode speed, tg128 (tokens/s, higher is better)",
        xs,
        x_higher_is_better: true,
        note: (missing > 0).then(|| format!("{missing} points without a decode speed measurement are not shown")),
    };
    let svg = render_frontier(&spec, points).map_err(ReportError::plot(path))?;
    write_atomic(path, svg.as_bytes()).map_err(ReportError::io(path))
}

/// Accuracy vs predicted decode time: x = ms per token from the time model, lower is better.
pub fn plot_frontier_time(path: &Path, points: &[FrontierPoint]) -> Result<(), ReportError> {
    let xs: Vec<Option<f64>> = points.iter().map(|p| p.predicted_decode_tps.map(|t| 1e3 / t)).collect();
    let missing = xs.iter().filter(|x| !x.is_some_and(f64::is_finite)).count();
    let spec = Spec {
        title: "Accuracy vs predicted decode time: held-out KLD by ms per token",
        x_caption: "predicted decode time per token, time model (ms, lower is better)",
        xs,
        x_higher_is_better: false,
        note: (missing > 0).then(|| format!("{missing} points without a prediction are not shown")),
    };
    let svg = render_frontier(&spec, points).map_err(ReportError::plot(path))?;
    write_atomic(path, svg.as_bytes()).map_err(ReportError::io(path))
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;
type DrawError = DrawingAreaErrorKind<std::io::Error>;

fn render_frontier(spec: &Spec<'_>, points: &[FrontierPoint]) -> Result<String, DrawError> {
    let shown: Vec<(usize, f64)> = (spec.xs.iter().enumerate())
        .filter_map(|(i, x)| x.filter(|x| x.is_finite() && points[i].kld_mean.is_finite()).map(|x| (i, x)))
        .collect();
    let axis = YAxis::new(&shown.iter().map(|&(i, _)| points[i].kld_mean).collect::<Vec<_>>());
    let xy: Vec<(f64, f64)> = shown.iter().map(|&(i, x)| (x, axis.pos(points[i].kld_mean))).collect();
    let (x0, x1) = padded_range(xy.iter().map(|p| p.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let x_ticks = nice_ticks(x0, x1, 8);
        let x_range = Ticked { lo: x0, hi: x1, keys: x_ticks.clone() };
        let y_range = Ticked { lo: axis.range.0, hi: axis.range.1, keys: axis.ticks.clone() };
        let mut body = root.titled(spec.title, (FONT, TITLE_PT))?;
        let font = (FONT, LABEL_PT).into_font().color(&BLACK);
        if let Some(note) = &spec.note {
            let x = (SIZE.0 as i32 - text_size(note, LABEL_PT).0) / 2;
            body.draw(&Text::new(note.as_str(), (x, 4), font.clone()))?;
            body = body.margin(22, 0, 0, 0);
        }
        let mut chart = ChartBuilder::on(&body)
            .margin(18)
            .x_label_area_size(62)
            .y_label_area_size(92)
            .build_cartesian_2d(x_range, y_range)?;
        chart
            .configure_mesh()
            .x_desc(spec.x_caption)
            .y_desc(axis.caption())
            .axis_desc_style((FONT, DESC_PT))
            .label_style((FONT, TICK_PT))
            .x_label_formatter(&|v| tick_text(&x_ticks, *v))
            .y_label_formatter(&|v| axis.tick_label(*v))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()?;
        let kinds: Vec<PointKind> = shown.iter().map(|&(i, _)| points[i].kind).collect();
        draw_points(&mut chart, &xy, &kinds, &pareto_front(&xy, spec.x_higher_is_better))?;
        if xy.is_empty() {
            let (w, h) = root.dim_in_pixel();
            let msg = "no points to show";
            root.draw(&Text::new(msg, ((w as i32 - text_size(msg, LABEL_PT).0) / 2, h as i32 / 2), font))?;
        } else {
            chart
                .configure_series_labels()
                .position(emptiest_corner(&xy, (x0, x1), axis.range))
                .margin(12)
                .label_font((FONT, LABEL_PT))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()?;
            draw_labels(&root, &point_labels(&chart, &xy, &shown, points, &axis))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Data range with 10% padding each side (or ±10% of the value when all points coincide).
fn padded_range(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.1 * (hi - lo) } else { 0.1 * lo.abs().max(1e-9) };
    (lo - pad, hi + pad)
}

/// Markers by kind, one legend entry per kind present, Pareto front underneath.
fn draw_points(
    chart: &mut Chart<'_, '_>,
    xy: &[(f64, f64)],
    kinds: &[PointKind],
    front: &[usize],
) -> Result<(), DrawError> {
    if !front.is_empty() {
        let line = front.iter().map(|&i| xy[i]);
        chart
            .draw_series(LineSeries::new(line, PARETO.stroke_width(3)))?
            .label("Pareto front (ringed)")
            .legend(|(x, y)| PathElement::new(vec![(x - 12, y), (x + 12, y)], PARETO.stroke_width(3)));
    }
    chart.draw_series(front.iter().map(|&i| Circle::new(xy[i], 12, PARETO.stroke_width(2))))?;
    let of = |k: PointKind| (0..xy.len()).filter(move |&i| kinds[i] == k).map(|i| xy[i]);
    let has = |k: PointKind| kinds.contains(&k);
    if has(PointKind::Random) {
        let st = RANDOM.stroke_width(2);
        chart
            .draw_series(of(PointKind::Random).map(|p| Cross::new(p, 6, st)))?
            .label("random plan, same bytes")
            .legend(move |(x, y)| Cross::new((x, y), 6, st));
    }
    if has(PointKind::Budget) {
        chart
            .draw_series(of(PointKind::Budget).map(|p| Circle::new(p, 6, BUDGET.filled())))?
            .label("allocator plan, budget sweep")
            .legend(|(x, y)| Circle::new((x, y), 6, BUDGET.filled()));
    }
    if has(PointKind::Uniform) {
        chart
            .draw_series(of(PointKind::Uniform).map(|p| TriangleMarker::new(p, 9, BLACK.filled())))?
            .label("uniform (all one format)")
            .legend(|(x, y)| TriangleMarker::new((x, y), 9, BLACK.filled()));
    }
    if has(PointKind::Chosen) {
        chart.draw_series(of(PointKind::Chosen).map(|p| Circle::new(p, 10, BLACK.filled())))?;
        chart
            .draw_series(of(PointKind::Chosen).map(|p| Circle::new(p, 8, CHOSEN.filled())))?
            .label("chosen plan (--budget-gb)")
            .legend(|(x, y)| Circle::new((x, y), 8, CHOSEN.filled()));
    }
    Ok(())
}

/// The legend goes in the quarter of the plot with the fewest points.
fn emptiest_corner(xy: &[(f64, f64)], xr: (f64, f64), yr: (f64, f64)) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let count = |right: bool, up: bool| {
        let norm = |v: f64, (a, b): (f64, f64)| (v - a) / (b - a);
        (xy.iter())
            .filter(|&&(x, y)| {
                let (nx, ny) = (norm(x, xr), norm(y, yr));
                (if right { nx > 0.55 } else { nx < 0.45 }) && (if up { ny > 0.55 } else { ny < 0.45 })
            })
            .count()
    };
    let corners =
        [(UpperRight, true, true), (UpperLeft, false, true), (LowerRight, true, false), (LowerLeft, false, false)];
    // min_by_key keeps the first of equal minima, so ties prefer the upper right.
    corners.into_iter().min_by_key(|&(_, r, u)| count(r, u)).map_or(UpperRight, |c| c.0)
}

/// A point's text label in pixels: top-left corner, estimated size, and the marker it names.
struct Label {
    text: String,
    at: (i32, i32),
    anchor: (i32, i32),
    size: (i32, i32),
}

impl Label {
    /// Where a leader line to the marker should end, when the label sits far from it.
    fn leader_end(&self) -> Option<(i32, i32)> {
        let (x, y) = self.anchor;
        let near = (x.clamp(self.at.0, self.at.0 + self.size.0), y.clamp(self.at.1, self.at.1 + self.size.1));
        let (dx, dy) = (near.0 - x, near.1 - y);
        (dx * dx + dy * dy > 20 * 20).then_some(near)
    }
}

/// Labels, with a thin leader line to their marker when they had to sit further away.
fn draw_labels(root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, labels: &[Label]) -> Result<(), DrawError> {
    let font = (FONT, LABEL_PT).into_font().color(&BLACK);
    for l in labels {
        if let Some(end) = l.leader_end() {
            root.draw(&PathElement::new(vec![l.anchor, end], RANDOM.stroke_width(1)))?;
        }
        root.draw(&Text::new(l.text.as_str(), l.at, font.clone()))?;
    }
    Ok(())
}

/// Text labels for uniform and chosen points, placed in pixel space so they do not collide.
fn point_labels(
    chart: &Chart<'_, '_>,
    xy: &[(f64, f64)],
    shown: &[(usize, f64)],
    points: &[FrontierPoint],
    axis: &YAxis,
) -> Vec<Label> {
    let px: Vec<(i32, i32)> = xy.iter().map(|&p| chart.backend_coord(&p)).collect();
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let mut wanted = Vec::new();
    for (k, &(i, _)) in shown.iter().enumerate() {
        let p = &points[i];
        let zero = if axis.log && p.kld_mean <= 0.0 { " (KLD 0)" } else { "" };
        match p.kind {
            PointKind::Uniform => wanted.push((k, format!("{}{zero}", p.label))),
            PointKind::Chosen => wanted.push((k, format!("chosen: {}{zero}", p.label))),
            _ => {}
        }
    }
    let anchors: Vec<(i32, i32)> = wanted.iter().map(|&(k, _)| px[k]).collect();
    let sizes: Vec<(i32, i32)> = wanted.iter().map(|(_, t)| text_size(t, LABEL_PT)).collect();
    let spots = place_labels(&anchors, &sizes, (xr.start, yr.start, xr.end, yr.end), &px);
    (wanted.into_iter().zip(spots).zip(anchors.iter().zip(&sizes)))
        .map(|(((_, text), at), (&anchor, &size))| Label { text, at, anchor, size })
        .collect()
}

/// Rough rendered size in pixels of `text` at plotters size `pt` in a sans-serif font (SVG cannot
/// measure text; the backend writes `pt / 1.24` px).
pub(crate) fn text_size(text: &str, pt: i32) -> (i32, i32) {
    let px = pt as f64 / 1.24;
    ((text.chars().count() as f64 * px * 0.6).ceil() as i32, px.ceil() as i32 + 2)
}

/// Top-left corners for labels next to their anchors: the first of eight candidate spots with the
/// least overlap with earlier labels, with the markers (`obstacles`) and with the outside of `area`.
pub(crate) fn place_labels(
    anchors: &[(i32, i32)],
    sizes: &[(i32, i32)],
    area: (i32, i32, i32, i32),
    obstacles: &[(i32, i32)],
) -> Vec<(i32, i32)> {
    type Rect = (i32, i32, i32, i32);
    let overlap = |a: Rect, b: Rect| {
        let w = (a.2.min(b.2) - a.0.max(b.0)).max(0);
        let h = (a.3.min(b.3) - a.1.max(b.1)).max(0);
        (w * h) as i64
    };
    let mut placed: Vec<Rect> = Vec::new();
    for (&(ax, ay), &(w, h)) in anchors.iter().zip(sizes) {
        let cands = [
            (ax + 12, ay - h - 6),
            (ax + 12, ay + 6),
            (ax - 12 - w, ay - h - 6),
            (ax - 12 - w, ay + 6),
            (ax + 18, ay - h / 2),
            (ax - 18 - w, ay - h / 2),
            (ax + 12, ay - 2 * h - 10),
            (ax + 12, ay + h + 10),
        ];
        let cost = |&(x, y): &(i32, i32)| {
            let r = (x, y, x + w, y + h);
            let inside = overlap(r, area);
            let mut c = 4 * ((w * h) as i64 - inside);
            c += placed.iter().map(|&p| 2 * overlap(r, p)).sum::<i64>();
            c += obstacles.iter().map(|&(ox, oy)| 3 * overlap(r, (ox - 15, oy - 15, ox + 15, oy + 15))).sum::<i64>();
            // A label nearer to another marker than to its own would name the wrong point.
            let d2 = |(px, py): (i32, i32)| {
                let (dx, dy) = ((px - px.clamp(r.0, r.2)) as i64, (py - py.clamp(r.1, r.3)) as i64);
                dx * dx + dy * dy
            };
            let own = d2((ax, ay));
            c + obstacles.iter().filter(|&&o| o != (ax, ay) && d2(o) < own).count() as i64 * (w * h) as i64
        };
        let best = cands.iter().copied().min_by_key(cost).unwrap_or((ax, ay));
        placed.push((best.0, best.1, best.0 + w, best.1 + h));
    }
    placed.iter().map(|r| (r.0, r.1)).collect()
}
