//! The files of a sensitivity run rendered from what it saved (`summary.json`, `frontier.csv`,
//! `scan.jsonl`): the SVG plots and `report.md`. `minilab plot` calls this with no model loaded.

use super::frontier::{frontier_markdown, read_frontier_csv};
use super::heatmap::{plot_heatmap, HeatCell};
use super::markdown_table;
use super::plot::{plot_frontier_memory, plot_frontier_speed, plot_frontier_time};
use crate::error::{Error, Result};
use crate::sensitivity::scan::ScanItem;
use crate::sensitivity::summary::Summary;
use std::path::Path;

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = super::read_run_file(path).map_err(run_file_error)?;
    serde_json::from_str(&text).map_err(|e| Error::input(format!("{}: invalid JSON: {e}", path.display())))
}

/// A run file that cannot be read: missing or unreadable is the user's to fix, like any input.
fn run_file_error(e: super::ReportError) -> Error {
    match e {
        super::ReportError::Io { path, source } => Error::io(&path, source),
        other => Error::input(other.to_string()),
    }
}

/// The finished items of `scan.jsonl` (the header line skipped).
pub fn read_scan(path: &Path) -> Result<Vec<ScanItem>> {
    let text = super::read_run_file(path).map_err(run_file_error)?;
    Ok(text.lines().skip(1).filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Re-renders the plots and `report.md` of run folder `dir`.
pub fn render(dir: &Path) -> Result<()> {
    let summary: Summary = read(&dir.join("summary.json"))?;
    let csv = dir.join("frontier.csv");
    let points = read_frontier_csv(&csv).map_err(|e| Error::input(format!("{}: {e}", csv.display())))?;
    let items = read_scan(&dir.join("scan.jsonl"))?;
    let rt = |e: super::ReportError| Error::Runtime(e.to_string());
    plot_frontier_memory(&dir.join("frontier_memory.svg"), &points).map_err(rt)?;
    if points.iter().any(|p| p.decode_tps.is_some()) {
        plot_frontier_speed(&dir.join("frontier_speed.svg"), &points).map_err(rt)?;
    }
    if points.iter().any(|p| p.predicted_decode_tps.is_some()) {
        plot_frontier_time(&dir.join("frontier_time.svg"), &points).map_err(rt)?;
    }
    let cells: Vec<HeatCell> =
        items.iter().filter_map(|i| HeatCell::from_layer_id(&i.layer, i.format, i.score)).collect();
    let metric = summary.settings["metric"].as_str().unwrap_or("kld").to_string();
    plot_heatmap(&dir.join("sensitivity_heatmap.svg"), &cells, &metric).map_err(rt)?;
    let report = report_md(&summary, &frontier_markdown(&points), &items, &metric);
    let p = dir.join("report.md");
    super::write_atomic(&p, report.as_bytes()).map_err(|e| Error::io(&p, e))
}

fn gb(b: u64) -> String {
    format!("{:.4} GB ({:.4} GiB)", b as f64 / 1e9, b as f64 / (1u64 << 30) as f64)
}

fn report_md(s: &Summary, frontier: &str, items: &[ScanItem], metric: &str) -> String {
    let mut r = header_md(s);
    r += &measured_md(s, metric);
    r += &baselines_md(s);
    r += "\n## Frontier\n\n![accuracy vs memory](frontier_memory.svg)\n\n![accuracy vs decode speed](frontier_speed.svg)\n\n";
    if s.speed.is_some() {
        r += "![accuracy vs predicted decode time](frontier_time.svg)\n\n";
    }
    r += frontier;
    if let Some(sp) = &s.speed {
        r += &speed_md(sp);
    }
    r += "\n\nSpeed: pp512 and tg128 with the bench code (one warm-up, then the `bench_reps` repetitions of this run); `device` bytes are the tensors the layers hold (counted), weights are the plan's bytes.\n\n";
    r += &top_layers_md(items, metric);
    r += "\n## Phases (wall time)\n\n";
    let rows: Vec<Vec<String>> = s.phases_s.iter().map(|(p, t)| vec![p.clone(), format!("{t:.1} s")]).collect();
    r += &markdown_table(&["phase", "seconds"], &rows);
    r
}

/// The title, the settings and what the plan spends.
fn header_md(s: &Summary) -> String {
    let mut r = format!("# Sensitivity report: {}\n\n", s.model);
    if let Some(w) = &s.warning {
        r += &format!("> **{w}**\n\n");
    }
    let settings = serde_json::to_string_pretty(&s.settings).unwrap_or_default();
    r += &format!("Settings (hash `{}`):\n\n```json\n{settings}\n```\n\n", s.settings_hash);
    let (budget, plan, min, max) = (gb(s.budget_bytes), gb(s.plan_weight_bytes), gb(s.min_bytes), gb(s.max_bytes));
    r += &format!(
        "Budget **{budget}**; the {} plan uses **{plan}** of resident weights (all-cheapest {min}, all-f16 {max}).\n",
        s.strategy
    );
    let formats: Vec<String> = s.formats.iter().map(|(f, n)| format!("{f} × {n}")).collect();
    r += &format!("Layers per format: {}.\n\n", formats.join(", "));
    r
}

/// The predicted scores against what the held-out evaluation measured, and the run's notes.
fn measured_md(s: &Summary, metric: &str) -> String {
    let mut r = "## Predicted vs measured (held-out text)\n\n".to_string();
    let k = s.measured.kld.as_ref();
    let row = |name: &str, value: String| vec![name.to_string(), value];
    let (m, f) = (&s.measured, &s.f16);
    r += &markdown_table(
        &["", "value"],
        &[
            row("predicted score, greedy", format!("{:.6}", s.predicted.greedy)),
            row("predicted score, optimal", format!("{:.6} (gap {:.6})", s.predicted.optimal, s.predicted.gap)),
            row(
                &format!("measured KLD ({metric} scores sum single-layer effects)"),
                k.map_or("-".into(), |k| {
                    format!("{:.6} ± {:.6} (median {:.6}, p99 {:.6})", k.mean, k.mean_stderr, k.median, k.p99)
                }),
            ),
            row("measured top-1 agreement", k.map_or("-".into(), |k| format!("{:.2} %", 100.0 * k.top1_agreement))),
            row(
                "measured PPL",
                format!("{:.4} ± {:.4} (f16: {:.4} ± {:.4})", m.ppl, m.ppl_stderr, f.ppl, f.ppl_stderr),
            ),
            row("held-out tokens scored", m.tokens.to_string()),
        ],
    );
    for n in &s.notes {
        r += &format!("\n> **Note:** {n}\n");
    }
    r
}

/// The chosen plan beside the uniform plans of about its size.
fn baselines_md(s: &Summary) -> String {
    let chosen_kld = s.measured.kld.as_ref().map_or(0.0, |k| k.mean);
    let chosen = vec![
        "chosen plan".into(),
        gb(s.plan_weight_bytes),
        format!("{chosen_kld:.6}"),
        format!("{:.4}", s.measured.ppl),
    ];
    let others = s
        .baselines
        .iter()
        .map(|b| vec![b.label.clone(), gb(b.weight_bytes), format!("{:.6}", b.kld_mean), format!("{:.4}", b.ppl)]);
    let rows: Vec<Vec<String>> = std::iter::once(chosen).chain(others).collect();
    "\n## Baselines of the same size\n\n".to_string() + &markdown_table(&["plan", "weights", "KLD", "PPL"], &rows)
}

/// The ten layers whose squeezing hurt most in the scan.
fn top_layers_md(items: &[ScanItem], metric: &str) -> String {
    let mut top: Vec<&ScanItem> = items.iter().collect();
    top.sort_by(|a, b| b.score.total_cmp(&a.score));
    let rows: Vec<Vec<String>> = top
        .iter()
        .take(10)
        .map(|i| vec![i.layer.clone(), i.format.to_string(), format!("{:.6}", i.score), format!("{:.4}", i.ppl)])
        .collect();
    let mut r = "## Most sensitive layers\n\n![sensitivity heatmap](sensitivity_heatmap.svg)\n\n".to_string();
    r += &markdown_table(&["layer", "format", &format!("score ({metric})"), "calib PPL"], &rows);
    r
}

/// How the decode-time model did, under the frontier table.
fn speed_md(sp: &crate::sensitivity::summary::SpeedSummary) -> String {
    let mut r = format!(
        "\n\nDecode-time model (batch 1, this device): a token costs {:.3} ms besides the linears (all-f16 step {:.3} ms), \
         and {:.1} µs more for each block whose q/k/v hold more than one format ({:.1} µs for gate/up; timed where \
         groups run fused, 0 where every layer runs alone); the chosen plan is predicted at {:.1} tok/s",
        sp.fixed_us / 1e3,
        sp.f16_step_us / 1e3,
        sp.split_qkv_us,
        sp.split_gate_up_us,
        sp.predicted_decode_tps
    );
    if let Some(m) = sp.measured_decode_tps {
        r += &format!(", measured {m:.1} tok/s");
    }
    if let Some(limit) = sp.max_decode_us {
        let margin = 100.0 * sp.speed_margin;
        r += &format!(" (limit {:.1} tok/s, planned with a {margin:.0} % margin)", 1e6 / limit);
    }
    r += ".";
    if let (Some(med), Some(max)) = (sp.error_pct_median, sp.error_pct_max) {
        r += &format!(
            " Over the {} mixed-format frontier points timed (the uniform ones calibrate the model), predicted tg128 was \
             within {med:.1} % of measured (median), {max:.1} % at worst.",
            sp.points_compared
        );
    }
    if let (Some(med), Some(max)) = (sp.drift_pct_median, sp.drift_pct_max) {
        r += &format!(
            " The uniform points, which the model predicts at its own steps timed minutes before, came within {med:.1} % \
             (median), {max:.1} % at worst: how far this machine drifted during the run{}.",
            if med > DRIFT_NOTE_PCT { ", so errors of that size say more about the machine than about the model" } else { "" }
        );
    }
    r
}

/// Drift (%) of the uniform points past which the report and the console say the machine was not
/// steady enough to judge the time model.
pub const DRIFT_NOTE_PCT: f64 = 5.0;

/// The few lines printed at the end of a run.
pub fn console_summary(s: &Summary) -> String {
    let k = s.measured.kld.as_ref().map_or(0.0, |k| k.mean);
    let r: Vec<f64> = s.baselines.iter().filter(|b| b.label.starts_with("random")).map(|b| b.kld_mean).collect();
    let mean_random = if r.is_empty() {
        "none measured".to_string()
    } else {
        format!("{:.6}", r.iter().sum::<f64>() / r.len() as f64)
    };
    let warning = s.warning.as_ref().map_or(String::new(), |w| format!("{}\n", w.to_uppercase()));
    let speed = s.speed.as_ref().map_or(String::new(), |sp| {
        let measured = sp.measured_decode_tps.map_or("not measured".into(), |m| format!("measured {m:.1}"));
        let limit = sp.max_decode_us.map_or(String::new(), |l| format!(", limit {:.1}", 1e6 / l));
        let drift = match sp.drift_pct_median {
            Some(d) if d > DRIFT_NOTE_PCT => format!(" (this machine's speed drifted {d:.1} % during the run)"),
            _ => String::new(),
        };
        format!("decode: predicted {:.1} tok/s, {measured}{limit}{drift}\n", sp.predicted_decode_tps)
    });
    format!(
        "{warning}plan: {} of {} budget, formats {:?}\n{speed}held-out: PPL {:.4} ± {:.4} (f16 {:.4}), KLD {k:.6} (predicted {:.6}; random plans of that size: {mean_random})\nphases: {}",
        gb(s.plan_weight_bytes), gb(s.budget_bytes), s.formats, s.measured.ppl, s.measured.ppl_stderr, s.f16.ppl, s.predicted.chosen,
        s.phases_s.iter().map(|(p, t)| format!("{p} {t:.1}s")).collect::<Vec<_>>().join(", ")
    )
}
