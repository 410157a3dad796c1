//! `minilab bench --output json` on the synthetic tiny model: the prompt test is read against the
//! matmul peak and the decode test against the copy bandwidth, both measured in the same run, and
//! `--no-roofline` measures neither.

use std::process::Command;

mod common;

fn bench(extra: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_minilab"))
        .args(["bench", "--model", "synthetic:tiny", "-p", "16", "-n", "4", "-r", "1", "--no-log", "-o", "json"])
        .args(extra)
        .output()
        .expect("minilab runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON document on stdout")
}

fn test<'a>(records: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    records.iter().find(|r| r["test"] == name).unwrap_or_else(|| panic!("no {name} in {records:?}"))
}

#[test]
fn prefill_and_decode_are_read_against_ceilings_measured_in_the_run() {
    let records = bench(&[]);
    let (pp, tg) = (test(&records, "pp16"), test(&records, "tg4"));
    let peak = pp["matmul_flops"].as_f64().expect("matmul_flops");
    assert!(peak > 1e8, "matmul peak {peak}");
    let pct = pp["compute_pct"].as_f64().expect("pp16 has compute_pct");
    assert!(pct.is_finite() && pct > 0.0, "compute_pct {pct}");
    assert!(pp["roofline_pct"].is_null(), "a prompt test has no bandwidth roofline");
    assert!(tg["roofline_pct"].as_f64().is_some_and(|p| p.is_finite() && p > 0.0), "{tg}");
    assert!(tg["compute_pct"].is_null(), "a decode test has no compute roofline");
}

#[test]
fn no_roofline_measures_no_ceiling() {
    let records = bench(&["--no-roofline"]);
    let pp = test(&records, "pp16");
    assert_eq!(pp["matmul_flops"].as_f64(), Some(0.0));
    assert!(pp["compute_pct"].is_null() && test(&records, "tg4")["roofline_pct"].is_null());
}

/// The ceilings' buffers (half a GiB of copies on the CPU) are measured before the memory readings
/// and never show in the reported peak.
#[test]
fn measuring_the_ceilings_leaves_the_peak_memory_alone() {
    let peak = |extra: &[&str]| test(&bench(extra), "pp16")["device_peak_bytes"].as_u64().expect("device_peak_bytes");
    let (with, without) = (peak(&[]), peak(&["--no-roofline"]));
    assert!(with < without + (128 << 20), "peak {with} B with the roofline, {without} B without");
}

/// A one-token prompt on a model with a tokenizer takes the text's first token (the text check,
/// which wants two tokens to score one, once refused it).
#[test]
fn a_one_token_prompt_reads_the_text() {
    let model = common::demo_model();
    let out = Command::new(env!("CARGO_BIN_EXE_minilab"))
        .args(["bench", "--model"])
        .arg(&model)
        .args(["-p", "1", "-n", "0", "-r", "1", "--no-log", "--no-roofline", "-o", "json"])
        .output()
        .expect("minilab runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    let pp1 = test(&records, "pp1");
    assert!(pp1["avg_ts"].as_f64().is_some_and(|t| t.is_finite() && t > 0.0) && pp1["n_prompt"] == 1, "{pp1}");
}
