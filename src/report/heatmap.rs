//! The sensitivity heatmap: block (rows) × layer kind (columns), one panel per format, colour = the
//! scan's score on a log scale shared by all panels so formats compare at a glance.

use super::plot::{nice_ticks, text_size, Ticked, DESC_PT, FONT, TICK_PT, TITLE_PT};
use super::{write_atomic, ReportError};
use crate::quant::Precision;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The linear layers of a llama block, in the order the heatmap draws them (GGUF names).
pub const LAYER_KINDS: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

const ROW_PX: u32 = 20;
const COL_PX: u32 = 56;
const BAR_PX: u32 = 190;
const ZERO: RGBColor = RGBColor(200, 200, 200);

/// One scanned (layer, format) score. `block: None` is the LM head (`output`), drawn as a row
/// spanning all kinds below the blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatCell {
    pub block: Option<usize>,
    pub kind: String,
    pub precision: Precision,
    pub score: f64,
}

impl HeatCell {
    /// From a GGUF layer id (`blk.N.kind` or `output`); `None` for ids the heatmap has no place for.
    pub fn from_layer_id(id: &str, precision: Precision, score: f64) -> Option<Self> {
        if id == "output" {
            return Some(Self { block: None, kind: "output".into(), precision, score });
        }
        let rest = id.strip_prefix("blk.")?;
        let (n, kind) = rest.split_once('.')?;
        let block = Some(n.parse().ok()?);
        LAYER_KINDS.contains(&kind).then(|| Self { block, kind: kind.into(), precision, score })
    }
}

/// viridis, sampled at nine points: perceptually uniform and readable in grey scale.
fn viridis(t: f64) -> RGBColor {
    const C: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let x = t.clamp(0.0, 1.0) * 8.0;
    let (i, f) = ((x.floor() as usize).min(7), x - x.floor().min(7.0));
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (C[i], C[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The shared log colour scale over the positive scores: (log10 min, log10 max), widened to one
/// decade when all scores are equal; `None` when no score is positive.
fn log_range(cells: &[HeatCell]) -> Option<(f64, f64)> {
    let pos = cells.iter().map(|c| c.score).filter(|s| s.is_finite() && *s > 0.0);
    let (lo, hi) = pos.fold((f64::INFINITY, 0.0f64), |(a, b), s| (a.min(s), b.max(s)));
    if !lo.is_finite() {
        return None;
    }
    let (l, h) = (lo.log10(), hi.log10());
    Some(if h - l < 1e-9 { (l - 0.5, h + 0.5) } else { (l, h) })
}

fn colour(score: f64, (l, h): (f64, f64)) -> RGBColor {
    if score > 0.0 && score.is_finite() {
        viridis((score.log10() - l) / (h - l))
    } else {
        ZERO
    }
}

/// One panel per format (side by side), a colour bar with min/max on the right. `metric` names
/// the score in the titles (e.g. `KLD`). Non-positive scores are grey; unscanned cells stay blank.
pub fn plot_heatmap(path: &Path, cells: &[HeatCell], metric: &str) -> Result<(), ReportError> {
    let mut formats: Vec<Precision> = cells.iter().map(|c| c.precision).collect();
    formats.sort();
    formats.dedup();
    let blocks = cells.iter().filter_map(|c| c.block).max().map_or(0, |b| b + 1);
    let rows = blocks + usize::from(cells.iter().any(|c| c.block.is_none()));
    let panel_w = COL_PX * 7 + 90;
    let title = format!("Per-layer sensitivity: increase of {metric} with one layer quantized, rest f16");
    let title_w = text_size(&title, TITLE_PT - 2).0 as u32 + 40;
    let width = (40 + formats.len().max(1) as u32 * panel_w + BAR_PX).max(title_w);
    let height = (70 + rows.max(1) as u32 * ROW_PX + 150).max(520);
    let known = log_range(cells);
    let range = known.unwrap_or((-1.0, 0.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(ReportError::plot(path))?;
        let body = root.titled(&title, (FONT, TITLE_PT - 2)).map_err(ReportError::plot(path))?;
        let (panels, bar) = body.split_horizontally(width - BAR_PX);
        let panels = panels.margin(0, 0, 20, 0);
        for (area, &p) in panels.split_evenly((1, formats.len().max(1))).iter().zip(&formats) {
            draw_panel(area, cells, p, blocks, rows, range).map_err(ReportError::plot(path))?;
        }
        draw_colour_bar(&bar, metric, range, known.is_some()).map_err(ReportError::plot(path))?;
        root.present().map_err(ReportError::plot(path))?;
    }
    write_atomic(path, svg.as_bytes()).map_err(ReportError::io(path))
}

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    cells: &[HeatCell],
    precision: Precision,
    blocks: usize,
    rows: usize,
    range: (f64, f64),
) -> DrawResult {
    let rows_f = rows.max(1) as f64;
    let x_keys: Vec<f64> = (0..7).map(|i| i as f64 + 0.5).collect();
    let y_keys: Vec<f64> = (0..rows).map(|r| rows_f - r as f64 - 0.5).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(format!("format: {precision}"), (FONT, DESC_PT + 2))
        .margin(6)
        .x_label_area_size(110)
        .y_label_area_size(70)
        .build_cartesian_2d(Ticked { lo: 0.0, hi: 7.0, keys: x_keys }, Ticked { lo: 0.0, hi: rows_f, keys: y_keys })?;
    let row_name = |y: f64| {
        let r = (rows_f - y - 0.5).round() as usize;
        if r < blocks {
            r.to_string()
        } else {
            "output".into()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("layer kind")
        .y_desc("block")
        .axis_desc_style((FONT, DESC_PT))
        .y_label_style((FONT, 15))
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|y| row_name(*y))
        .draw()?;
    // Rotated kind names, drawn by hand: plotters centres rotated tick labels on the axis line.
    let font = (FONT, TICK_PT).into_font().transform(FontTransform::Rotate90);
    let style = TextStyle::from(font).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, kind) in LAYER_KINDS.iter().enumerate() {
        let at = EmptyElement::at((i as f64 + 0.5, 0.0)) + Text::new(*kind, (0, 8), style.clone());
        chart.plotting_area().draw(&at)?;
    }
    let rects = cells.iter().filter(|c| c.precision == precision).filter_map(|c| {
        let (x0, x1, r) = match c.block {
            Some(b) => {
                let col = LAYER_KINDS.iter().position(|k| *k == c.kind)? as f64;
                (col, col + 1.0, b)
            }
            None => (0.0, 7.0, blocks),
        };
        let y0 = rows_f - r as f64 - 1.0;
        let corners = [(x0 + 0.03, y0 + 0.06), (x1 - 0.03, y0 + 0.94)];
        Some(Rectangle::new(corners, colour(c.score, range).filled()))
    });
    chart.draw_series(rects)?;
    Ok(())
}

fn draw_colour_bar(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    metric: &str,
    (l, h): (f64, f64),
    any_positive: bool,
) -> DrawResult {
    let decades: Vec<f64> = (l.ceil() as i32..=h.floor() as i32).map(f64::from).collect();
    let ticks = if decades.len() >= 2 { decades } else { nice_ticks(l, h, 4) };
    let label = |t: f64| {
        let v = 10f64.powf(t);
        if (t - t.round()).abs() < 1e-9 {
            format!("1e{}", t.round() as i32)
        } else {
            format!("{v:.1e}")
        }
    };
    let font = (FONT, TICK_PT).into_font().color(&BLACK);
    let (w, bh) = area.dim_in_pixel();
    let notes = if any_positive {
        [format!("max {:.2e}", 10f64.powf(h)), format!("min {:.2e}", 10f64.powf(l)), "grey: ≤ 0".into()]
    } else {
        ["no positive".into(), "scores".into(), "grey: ≤ 0".into()]
    };
    for (i, n) in notes.iter().enumerate() {
        area.draw(&Text::new(n.clone(), (12, bh as i32 - 130 + 22 * i as i32), font.clone()))?;
    }
    area.draw(&Rectangle::new([(96, bh as i32 - 86), (112, bh as i32 - 72)], ZERO.filled()))?;
    if !any_positive {
        return Ok(());
    }
    let top = format!("Δ {metric} (log)");
    area.draw(&Text::new(top.clone(), ((w as i32 - text_size(&top, TICK_PT).0) / 2, 18), font.clone()))?;
    let inner = area.margin(46, 150, 10, 0);
    let mut chart = ChartBuilder::on(&inner)
        .right_y_label_area_size(80)
        .build_cartesian_2d(0f64..1f64, Ticked { lo: l, hi: h, keys: ticks })?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_label_style((FONT, TICK_PT))
        .y_label_formatter(&|t| label(*t))
        .draw()?;
    let steps = 120;
    chart.draw_series((0..steps).map(|i| {
        let (a, b) = (l + (h - l) * i as f64 / steps as f64, l + (h - l) * (i + 1) as f64 / steps as f64);
        Rectangle::new([(0.0, a), (1.0, b)], viridis((i as f64 + 0.5) / steps as f64).filled())
    }))?;
    Ok(())
}
