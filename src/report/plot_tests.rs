//! Renders every plot from synthetic numbers and checks the SVGs carry their axes and legends.
//! Set `MINILAB_KEEP_PLOTS=DIR` to keep the files for a look (e.g. with rsvg-convert).

use super::*;
use crate::quant::Precision;

fn point(label: &str, kind: PointKind, mb: f64, kld: f64, tps: f64) -> FrontierPoint {
    FrontierPoint {
        label: label.into(),
        kind,
        budget_bytes: (kind == PointKind::Budget || kind == PointKind::Chosen).then_some((mb * 1e6) as u64),
        weight_bytes: (mb * 1e6) as u64,
        device_bytes: Some((mb * 1.1e6) as u64),
        ppl: 20.0 + 100.0 * kld,
        ppl_stderr: 0.3,
        kld_mean: kld,
        kld_p99: 8.0 * kld,
        top1: 1.0 - kld,
        prefill_tps: Some(tps * 30.0),
        decode_tps: Some(tps),
        predicted_decode_tps: Some(tps * 0.95),
    }
}

/// A frontier shaped like a small llama's: f16 at KLD 0, nf4 two decades worse than int8.
fn synthetic_points() -> Vec<FrontierPoint> {
    let mut v = vec![
        point("all f16", PointKind::Uniform, 269.0, 0.0, 140.0),
        point("all int8", PointKind::Uniform, 163.0, 0.0011, 190.0),
        point("all nf4", PointKind::Uniform, 115.0, 0.085, 230.0),
        point("all nf4_dq", PointKind::Uniform, 108.0, 0.09, 228.0),
        point("greedy @ 0.150 GB", PointKind::Chosen, 149.5, 0.0062, 200.0),
    ];
    for k in 0..8 {
        let mb = 118.0 + 20.0 * k as f64;
        let kld = 0.06 * (-(k as f64) * 0.75).exp();
        v.push(point(&format!("budget {k}"), PointKind::Budget, mb, kld, 225.0 - 11.0 * k as f64));
    }
    for k in 0..5 {
        let kld = 0.018 + 0.004 * k as f64;
        v.push(point(&format!("random {k}"), PointKind::Random, 149.0 + 0.2 * k as f64, kld, 195.0 + 2.0 * k as f64));
    }
    v
}

fn synthetic_cells() -> Vec<HeatCell> {
    let mut cells = Vec::new();
    for b in 0..30usize {
        for (k, kind) in LAYER_KINDS.iter().enumerate() {
            let base = 1e-4 * (1.0 + ((b * 7 + k * 13) % 17) as f64) * if (2..=27).contains(&b) { 1.0 } else { 8.0 };
            let noise = if (b + k) % 23 == 0 { -1e-5 } else { 0.0 };
            let id = format!("blk.{b}.{kind}");
            cells.push(HeatCell::from_layer_id(&id, Precision::Int8, base * 0.02 + noise).unwrap());
            cells.push(HeatCell::from_layer_id(&id, Precision::Nf4, base * (1.0 + k as f64)).unwrap());
        }
    }
    cells.push(HeatCell::from_layer_id("output", Precision::Int8, 4e-4).unwrap());
    cells.push(HeatCell::from_layer_id("output", Precision::Nf4, 2e-2).unwrap());
    cells
}

#[test]
fn heat_cells_parse_gguf_ids() {
    let c = HeatCell::from_layer_id("blk.12.ffn_down", Precision::Nf4, 0.5).unwrap();
    assert_eq!((c.block, c.kind.as_str()), (Some(12), "ffn_down"));
    assert_eq!(HeatCell::from_layer_id("output", Precision::Int8, 1.0).unwrap().block, None);
    assert!(HeatCell::from_layer_id("blk.x.attn_q", Precision::Nf4, 0.5).is_none());
    assert!(HeatCell::from_layer_id("token_embd", Precision::Nf4, 0.5).is_none());
}

#[test]
fn all_plots_render_with_axes_and_legends() {
    let keep = std::env::var_os("MINILAB_KEEP_PLOTS").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.as_deref().unwrap_or(tmp.path());
    std::fs::create_dir_all(dir).unwrap();
    let pts = synthetic_points();
    let (mem, speed, heat) = (dir.join("frontier_memory.svg"), dir.join("frontier_speed.svg"), dir.join("heat.svg"));
    plot_frontier_memory(&mem, &pts).unwrap();
    plot_frontier_speed(&speed, &pts).unwrap();
    plot_heatmap(&heat, &synthetic_cells(), "KLD").unwrap();
    let legend = ["Pareto front", "uniform (all one format)", "chosen plan", "random plan", "budget sweep"];
    for (p, axis) in [(&mem, "weight memory (GB = 10⁹ bytes"), (&speed, "decode speed, tg128 (tokens/s")] {
        let svg = std::fs::read_to_string(p).unwrap();
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{}", p.display());
        assert!(svg.contains(axis) && svg.contains("held-out KLD vs f16, mean (nats, log scale)"));
        for l in legend.iter().chain(&["all nf4", "all f16 (KLD 0)", "chosen: greedy @ 0.150 GB"]) {
            assert!(svg.contains(l), "{} lacks `{l}`", p.display());
        }
    }
    let svg = std::fs::read_to_string(&heat).unwrap();
    for t in ["<svg", "format: int8", "format: nf4", "layer kind", "block", "attn_output", "output", "Δ KLD (log)"] {
        assert!(svg.contains(t), "heatmap lacks `{t}`");
    }
}

#[test]
fn linear_scale_when_the_range_is_narrow() {
    let pts: Vec<_> = (0..4)
        .map(|k| point(&format!("b{k}"), PointKind::Budget, 100.0 + k as f64, 0.01 + 0.001 * k as f64, 10.0))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("lin.svg");
    plot_frontier_memory(&p, &pts).unwrap();
    let svg = std::fs::read_to_string(&p).unwrap();
    assert!(svg.contains("(nats, linear scale)") && !svg.contains("uniform (all one format)"));
}

#[test]
fn labels_avoid_each_other() {
    let spots = plot::place_labels(&[(100, 100), (102, 101)], &[(60, 16), (60, 16)], (0, 0, 500, 500), &[]);
    let (a, b) = (spots[0], spots[1]);
    let overlap_x = (a.0 + 60).min(b.0 + 60) - a.0.max(b.0);
    let overlap_y = (a.1 + 16).min(b.1 + 16) - a.1.max(b.1);
    assert!(overlap_x <= 0 || overlap_y <= 0, "{spots:?}");
}

#[test]
fn degenerate_inputs_still_render() {
    let keep = std::env::var_os("MINILAB_KEEP_PLOTS").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.as_deref().unwrap_or(tmp.path());
    let one = vec![point("all f16", PointKind::Uniform, 269.0, 0.0, 140.0)];
    let mut no_speed = synthetic_points();
    no_speed.iter_mut().for_each(|p| p.decode_tps = None);
    plot_frontier_memory(&dir.join("empty.svg"), &[]).unwrap();
    plot_frontier_memory(&dir.join("one.svg"), &one).unwrap();
    plot_frontier_speed(&dir.join("no_speed.svg"), &no_speed).unwrap();
    let svg = std::fs::read_to_string(dir.join("no_speed.svg")).unwrap();
    assert!(svg.contains("18 points without a decode speed measurement are not shown"));
    plot_heatmap(&dir.join("heat_empty.svg"), &[], "KLD").unwrap();
    let noisy = vec![HeatCell::from_layer_id("blk.0.attn_q", Precision::Nf4, -1e-4).unwrap()];
    plot_heatmap(&dir.join("heat_noisy.svg"), &noisy, "PPL").unwrap();
}

#[test]
fn tick_helpers_pick_round_values() {
    let t = plot::nice_ticks(0.105, 0.28, 8);
    let want = [0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275];
    assert!(t.len() == want.len() && t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{t:?}");
    assert_eq!(plot::tick_text(&[0.125, 0.15], 0.15), "0.150");
    assert_eq!(plot::tick_text(&[140.0, 160.0], 140.0), "140");
}
