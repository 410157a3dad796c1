//! A bench run on stdout: llama-bench's markdown table, the results log's CSV, or JSON.

use super::{log, BenchRecord};
use crate::error::{Error, Result};
use crate::outln;

/// How records are printed (`-o/--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Markdown,
    Csv,
    Json,
}

impl std::str::FromStr for Output {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "md" => Ok(Self::Markdown),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            _ => Err(Error::input(format!("-o/--output: expected md, csv or json, got {s:?}"))),
        }
    }
}

/// The records as one document; `n_params` is the model's parameter count (markdown only).
pub fn render(records: &[BenchRecord], output: Output, n_params: u64, now: &str) -> Result<String> {
    let mut out = String::new();
    match output {
        Output::Json => {
            outln!(out, "{}", serde_json::to_string_pretty(records).map_err(|e| Error::Runtime(e.to_string()))?)
        }
        Output::Csv => {
            outln!(out, "{}", log::HEADER);
            for r in records {
                outln!(out, "{}", log::line(r, now));
            }
        }
        Output::Markdown => markdown(&mut out, records, n_params),
    }
    Ok(out)
}

/// Bytes as the table prints them.
fn gb(b: u64) -> String {
    format!("{:.3} GB", b as f64 / 1e9)
}

fn markdown(out: &mut String, records: &[BenchRecord], n_params: u64) {
    let Some(r0) = records.first() else { return };
    outln!(
        out,
        "| model | weights | params | precision | device | dtype | threads | test | t/s | ttft ms | roofline |"
    );
    outln!(out, "| --- | ---: | ---: | --- | --- | --- | ---: | --- | ---: | ---: | ---: |");
    let params = format!("{:.2} B", n_params as f64 / 1e9);
    for r in records {
        let ttft = r.ttft_ms.map(|t| format!("{t:.1}")).unwrap_or_default();
        let roof = r.roofline_pct.or(r.compute_pct).map(|p| format!("{p:.1} %")).unwrap_or_default();
        outln!(
            out,
            "| {} | {} | {params} | {} | {} | {} | {} | {} | {:.2} ± {:.2} | {ttft} | {roof} |",
            r.model,
            gb(r.weight_bytes),
            r.precision,
            r.device,
            r.dtype,
            r.threads,
            r.test,
            r.avg_ts,
            r.stddev_ts
        );
    }
    outln!(out);
    footnotes(out, records, r0);
}

/// What the table's columns were measured against: memory, the copy bandwidth and matmul peak the
/// roofline columns divide by, the kernel settings, and how decode launched.
fn footnotes(out: &mut String, records: &[BenchRecord], r0: &BenchRecord) {
    outln!(
        out,
        "weights (computed from the plan): {}   device memory (measured{}): {} after load, {} peak",
        gb(r0.weight_bytes),
        if r0.device == "cpu" { ", RSS growth" } else { ", free-memory delta" },
        gb(r0.device_bytes),
        gb(r0.device_peak_bytes)
    );
    if r0.bandwidth > 0.0 {
        outln!(
            out,
            "measured copy bandwidth: {:.1} GB/s (read + write); roofline = decode t/s × bytes read per token ÷ bandwidth",
            r0.bandwidth / 1e9
        );
    }
    if r0.matmul_flops > 0.0 {
        let peak = match r0.matmul_flops {
            f if f >= 1e12 => format!("{:.1} TFLOP/s", f / 1e12),
            f => format!("{:.1} GFLOP/s", f / 1e9),
        };
        outln!(
            out,
            "measured matmul peak: {peak} ({}); roofline = prompt FLOPs/s (linears, last position's head, attention matmuls) ÷ peak",
            r0.dtype
        );
    }
    if !r0.settings.is_empty() {
        outln!(out, "kernel settings (environment): {}", r0.settings.join(" "));
    }
    if r0.device != "cpu" {
        match records.iter().filter_map(|r| r.cuda_graph).reduce(|a, b| a && b) {
            Some(true) => outln!(out, "decode: each step replayed as one CUDA graph (captured inside the clock)"),
            Some(false) => outln!(out, "decode: eager launches (no CUDA graph)"),
            None => {}
        }
        if let Some(folded) = records.iter().filter_map(|r| r.norms_folded).reduce(|a, b| a && b) {
            let how = if folded { "folded into the GEMV launches" } else { "in launches of their own" };
            outln!(out, "decode: norms and residual adds {how} (MINILAB_FUSE_NORM)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: &str, test: &str, cuda_graph: Option<bool>) -> BenchRecord {
        BenchRecord {
            model: "m".into(),
            test: test.into(),
            n_prompt: 0,
            n_gen: 4,
            depth: 0,
            avg_ts: 10.0,
            stddev_ts: 1.0,
            samples_ns: vec![1],
            ttft_ms: None,
            weight_bytes: 1,
            device_bytes: 1,
            device_peak_bytes: 1,
            bandwidth: 0.0,
            roofline_pct: None,
            matmul_flops: 0.0,
            compute_pct: None,
            cuda_graph,
            norms_folded: cuda_graph,
            precision: "f16".into(),
            device: device.into(),
            dtype: "bf16".into(),
            threads: 1,
            reps: 1,
            settings: vec![],
        }
    }

    /// The table says how the GPU decoded, and only when a tgN test ran on a GPU.
    #[test]
    fn markdown_names_the_decode_mode() {
        let md = |rs: &[BenchRecord]| render(rs, Output::Markdown, 1, "now").unwrap();
        let pp = record("cuda:0", "pp8", None);
        assert!(md(&[pp.clone(), record("cuda:0", "tg4", Some(true))]).contains("replayed as one CUDA graph"));
        assert!(md(&[pp.clone(), record("cuda:0", "tg4", Some(false))]).contains("eager launches"));
        assert!(!md(&[pp]).contains("decode:"));
        assert!(!md(&[record("cpu", "tg4", Some(false))]).contains("decode:"));
        assert!(md(&[record("cuda:0", "tg4", Some(true))]).contains("residual adds folded into the GEMV"));
        assert!(md(&[record("cuda:0", "tg4", Some(false))]).contains("residual adds in launches of their own"));
        let json = render(&[record("cuda:0", "tg4", Some(true))], Output::Json, 1, "now").unwrap();
        assert!(json.contains("\"cuda_graph\": true"), "{json}");
        assert!(json.contains("\"norms_folded\": true"), "{json}");
    }

    /// ppN rows show their share of the matmul peak in the roofline column, and the peak is named.
    #[test]
    fn markdown_shows_the_prefill_roofline() {
        let mut pp = record("cpu", "pp8", None);
        pp.compute_pct = Some(12.34);
        pp.matmul_flops = 5e10;
        let md = render(&[pp.clone()], Output::Markdown, 1, "now").unwrap();
        assert!(md.contains("| 12.3 % |"), "{md}");
        assert!(md.contains("matmul peak: 50.0 GFLOP/s"), "{md}");
        pp.matmul_flops = 7.9e14;
        assert!(render(&[pp.clone()], Output::Markdown, 1, "now").unwrap().contains("matmul peak: 790.0 TFLOP/s"));
        pp.matmul_flops = 0.0;
        assert!(!render(&[pp], Output::Markdown, 1, "now").unwrap().contains("matmul peak"));
    }

    /// A run with kernel knobs set says so in the table, the JSON and the log's version column.
    #[test]
    fn the_kernel_settings_in_effect_are_recorded() {
        let mut r = record("cuda:0", "tg4", Some(true));
        r.settings = vec!["MINILAB_PREFETCH=bulk".into(), "MINILAB_PDL=1".into()];
        let md = render(std::slice::from_ref(&r), Output::Markdown, 1, "now").unwrap();
        assert!(md.contains("kernel settings (environment): MINILAB_PREFETCH=bulk MINILAB_PDL=1"), "{md}");
        let json = render(std::slice::from_ref(&r), Output::Json, 1, "now").unwrap();
        assert!(json.contains("\"MINILAB_PREFETCH=bulk\""), "{json}");
        let csv = render(&[r], Output::Csv, 1, "now").unwrap();
        let row = csv.lines().nth(1).unwrap();
        assert!(row.ends_with(&format!("{}+MINILAB_PREFETCH=bulk+MINILAB_PDL=1", env!("CARGO_PKG_VERSION"))), "{row}");
        assert_eq!(row.split(',').count(), super::log::HEADER.split(',').count());
        let plain = render(&[record("cuda:0", "tg4", Some(true))], Output::Markdown, 1, "now").unwrap();
        assert!(!plain.contains("kernel settings"));
    }
}
