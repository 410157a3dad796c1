//! The accuracy-vs-cost frontier as data: one [`FrontierPoint`] per measured configuration, saved as
//! `frontier.csv` so `minilab plot --run DIR` can redraw everything without a model.

use super::{markdown_table, write_atomic, ReportError};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

/// What a frontier point stands for; the plots mark each kind differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PointKind {
    /// Every linear layer in one format (all f16, all int8, all nf4).
    Uniform,
    /// The allocator's plan for one budget of the sweep.
    Budget,
    /// The plan chosen for the user's `--budget-gb`.
    Chosen,
    /// A random plan of about the same bytes (the baseline the allocator must beat).
    Random,
}

impl PointKind {
    /// The name used in `frontier.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Budget => "budget",
            Self::Chosen => "chosen",
            Self::Random => "random",
        }
    }
}

impl FromStr for PointKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [Self::Uniform, Self::Budget, Self::Chosen, Self::Random]
            .into_iter()
            .find(|k| k.name() == s.trim())
            .ok_or_else(|| format!("unknown point kind `{s}` (expected uniform, budget, chosen or random)"))
    }
}

/// One measured configuration: its memory, held-out accuracy and speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// Short human label, shown next to uniform and chosen points (e.g. `all nf4`).
    pub label: String,
    pub kind: PointKind,
    /// The budget the plan was made for (bytes, 10⁹ per GB); `None` for uniform and random points.
    pub budget_bytes: Option<u64>,
    /// Resident weight bytes computed from the plan (embeddings and norms included).
    pub weight_bytes: u64,
    /// Measured device bytes, if measured; never mixed with `weight_bytes`.
    pub device_bytes: Option<u64>,
    pub ppl: f64,
    pub ppl_stderr: f64,
    /// KL divergence against the all-f16 model on the held-out text, in nats.
    pub kld_mean: f64,
    pub kld_p99: f64,
    /// Top-1 agreement with the f16 model, as a fraction in [0, 1].
    pub top1: f64,
    /// Prompt-processing tokens/s (pp512), if benchmarked.
    pub prefill_tps: Option<f64>,
    /// Decode tokens/s (tg128), if benchmarked.
    pub decode_tps: Option<f64>,
    /// Decode tokens/s the time model predicts for this plan, if one was measured.
    pub predicted_decode_tps: Option<f64>,
}

const COLUMNS: [&str; 13] = [
    "label",
    "kind",
    "budget_bytes",
    "weight_bytes",
    "device_bytes",
    "ppl",
    "ppl_stderr",
    "kld_mean",
    "kld_p99",
    "top1",
    "prefill_tps",
    "decode_tps",
    "predicted_decode_tps",
];

/// Quote a CSV field only when it needs it (RFC 4180).
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `{:?}` prints the shortest string that parses back to the same f64 (and `NaN`, `inf`).
fn opt<T: std::fmt::Debug>(v: Option<T>) -> String {
    v.map_or(String::new(), |v| format!("{v:?}"))
}

/// `frontier.csv`: a header line, then one line per point; floats round-trip exactly, absent
/// optional values are empty fields. Written atomically.
pub fn write_frontier_csv(path: &Path, points: &[FrontierPoint]) -> Result<(), ReportError> {
    let mut out = COLUMNS.join(",") + "\n";
    for p in points {
        let fields = [
            quote(&p.label),
            p.kind.name().to_string(),
            opt(p.budget_bytes),
            p.weight_bytes.to_string(),
            opt(p.device_bytes),
            format!("{:?}", p.ppl),
            format!("{:?}", p.ppl_stderr),
            format!("{:?}", p.kld_mean),
            format!("{:?}", p.kld_p99),
            format!("{:?}", p.top1),
            opt(p.prefill_tps),
            opt(p.decode_tps),
            opt(p.predicted_decode_tps),
        ];
        let _ = writeln!(out, "{}", fields.join(","));
    }
    write_atomic(path, out.as_bytes()).map_err(ReportError::io(path))
}

/// Split CSV text into records of fields, honouring quotes (which may hold commas and newlines).
/// Returns each record with the 1-based line it starts on.
/// One CSV record: the 1-based line it starts on and its fields.
type Record = (usize, Vec<String>);

fn parse_records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut line, mut start, mut quoted) = (1, 1, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut record)));
                line += 1;
                start = line;
            }
            (_, c) => {
                line += usize::from(c == '\n');
                field.push(c);
            }
        }
    }
    if quoted {
        return Err((start, "unterminated quoted field".into()));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}

fn point_from(get: impl Fn(&str) -> Option<String>) -> Result<FrontierPoint, String> {
    let text = |c: &str| get(c).ok_or_else(|| format!("missing column `{c}`"));
    fn num<T: FromStr>(c: &str, s: &str) -> Result<T, String> {
        s.trim().parse().map_err(|_| format!("column `{c}`: `{s}` is not a number"))
    }
    let req = |c: &str| -> Result<f64, String> { num(c, &text(c)?) };
    let opt_f = |c: &str| -> Result<Option<f64>, String> {
        get(c).filter(|s| !s.trim().is_empty()).map(|s| num(c, &s)).transpose()
    };
    let opt_u = |c: &str| -> Result<Option<u64>, String> {
        get(c).filter(|s| !s.trim().is_empty()).map(|s| num(c, &s)).transpose()
    };
    Ok(FrontierPoint {
        label: text("label")?,
        kind: text("kind")?.parse()?,
        budget_bytes: opt_u("budget_bytes")?,
        weight_bytes: num("weight_bytes", &text("weight_bytes")?)?,
        device_bytes: opt_u("device_bytes")?,
        ppl: req("ppl")?,
        ppl_stderr: req("ppl_stderr")?,
        kld_mean: req("kld_mean")?,
        kld_p99: req("kld_p99")?,
        top1: req("top1")?,
        prefill_tps: opt_f("prefill_tps")?,
        decode_tps: opt_f("decode_tps")?,
        predicted_decode_tps: opt_f("predicted_decode_tps")?,
    })
}

/// Read a `frontier.csv` written by [`write_frontier_csv`]. Columns are found by header name, so
/// extra columns (from a newer version) are ignored and order does not matter.
pub fn read_frontier_csv(path: &Path) -> Result<Vec<FrontierPoint>, ReportError> {
    let text = super::read_run_file(path)?;
    let err = |line: usize, msg: String| ReportError::Parse { path: path.to_path_buf(), line, msg };
    let mut records = parse_records(&text).map_err(|(l, m)| err(l, m))?.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(err(1, "empty file: expected a header line".into()));
    };
    let mut points = Vec::new();
    for (line, rec) in records {
        if rec.len() == 1 && rec[0].trim().is_empty() {
            continue;
        }
        let get = |c: &str| header.iter().position(|h| h.trim() == c).and_then(|i| rec.get(i).cloned());
        points.push(point_from(get).map_err(|m| err(line, m))?);
    }
    Ok(points)
}

/// Indices of the Pareto-optimal points, sorted by x: lower y is always better; lower x is better
/// unless `x_higher_is_better` (speed). Points with a non-finite coordinate are never on the front.
pub fn pareto_front(points: &[(f64, f64)], x_higher_is_better: bool) -> Vec<usize> {
    let sx = if x_higher_is_better { -1.0 } else { 1.0 };
    let ok = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let dominates =
        |a: (f64, f64), b: (f64, f64)| sx * a.0 <= sx * b.0 && a.1 <= b.1 && (sx * a.0 < sx * b.0 || a.1 < b.1);
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| ok(&points[i]) && !points.iter().any(|&q| ok(&q) && dominates(q, points[i])))
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0).then(a.cmp(&b)));
    front
}

/// The frontier as a markdown table for `report.md` (GB = 10⁹ bytes; top-1 in %).
pub fn frontier_markdown(points: &[FrontierPoint]) -> String {
    let gb = |b: u64| format!("{:.4}", b as f64 / 1e9);
    let tps = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|p| {
            vec![
                p.label.clone(),
                p.kind.name().to_string(),
                gb(p.weight_bytes),
                p.device_bytes.map_or("–".to_string(), gb),
                format!("{:.3} ± {:.3}", p.ppl, p.ppl_stderr),
                format!("{:.5}", p.kld_mean),
                format!("{:.4}", p.kld_p99),
                format!("{:.2}", 100.0 * p.top1),
                tps(p.prefill_tps),
                tps(p.decode_tps),
                tps(p.predicted_decode_tps),
            ]
        })
        .collect();
    let headers = [
        "config",
        "kind",
        "weights (GB)",
        "device (GB)",
        "PPL ± err",
        "KLD mean",
        "KLD p99",
        "top-1 %",
        "pp512 tok/s",
        "tg128 tok/s",
        "tg128 predicted",
    ];
    markdown_table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<FrontierPoint> {
        let p = |label: &str, kind, w: u64, kld: f64, tps: Option<f64>| FrontierPoint {
            label: label.into(),
            kind,
            budget_bytes: (kind == PointKind::Budget).then_some(w + 17),
            weight_bytes: w,
            device_bytes: tps.map(|_| w + 1_000_003),
            ppl: 12.345678901234567,
            ppl_stderr: 0.1,
            kld_mean: kld,
            kld_p99: kld * 10.0,
            top1: 0.93,
            prefill_tps: tps.map(|t| t * 20.0),
            decode_tps: tps,
            predicted_decode_tps: tps.map(|t| t * 1.05),
        };
        vec![
            p("all f16, \"ref\"", PointKind::Uniform, 270_000_000, 0.0, Some(50.0)),
            p("mixed\nline", PointKind::Budget, 150_000_000, 1e-7, None),
            p("chosen", PointKind::Chosen, 120_000_000, 0.0123, Some(f64::INFINITY)),
            p("r", PointKind::Random, 120_000_001, f64::NAN, Some(60.5)),
        ]
    }

    #[test]
    fn frontier_csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frontier.csv");
        let pts = sample();
        write_frontier_csv(&path, &pts).unwrap();
        let back = read_frontier_csv(&path).unwrap();
        assert_eq!(back.len(), pts.len());
        for (a, b) in pts.iter().zip(&back) {
            // NaN != NaN, so compare through the debug text.
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    #[test]
    fn frontier_csv_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, format!("{}\nx,uniform,,12,,abc,0,0,0,0,,\n", COLUMNS.join(","))).unwrap();
        let e = read_frontier_csv(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("`ppl`"), "{e}");
        std::fs::write(&path, "label,kind\nx,weird\n").unwrap();
        assert!(read_frontier_csv(&path).unwrap_err().to_string().contains("unknown point kind"));
    }

    #[test]
    fn pareto_front_keeps_non_dominated_points() {
        let pts = [(1.0, 5.0), (2.0, 3.0), (2.5, 4.0), (3.0, 1.0), (0.5, f64::NAN), (3.0, 1.0)];
        assert_eq!(pareto_front(&pts, false), vec![0, 1, 3, 5]);
        // Higher x is better: (3, 1) dominates everything.
        assert_eq!(pareto_front(&pts, true), vec![3, 5]);
    }

    #[test]
    fn frontier_markdown_has_a_row_per_point() {
        let md = frontier_markdown(&sample());
        assert_eq!(md.lines().count(), 2 + sample().len());
        assert!(md.contains("| chosen") && md.contains("0.1200") && md.contains("93.00"));
    }
}
