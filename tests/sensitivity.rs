//! The sensitivity pipeline on a tiny model: prefix caching equals a full forward, a resumed scan
//! ends where an uninterrupted one does, and bad budgets or settings are refused with exit 2.

mod common;

use assert_cmd::Command;
use candle_core::{DType, Device};
use minilab::eval::{self, text};
use minilab::model::{self, LayerId, LayerKind, ModelSpec};
use minilab::quant::Precision;
use minilab::sensitivity::scan;
use minilab::sensitivity::timing::StepTimes;
use std::path::Path;

use common::tiny::{fixture, Fixture};

fn sensitivity(f: &Fixture, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = Command::cargo_bin("minilab").unwrap();
    cmd.args(f.sensitivity_args(out)).args(["--baselines", "2"]).args(extra).env("RUST_BACKTRACE", "1").assert()
}

#[test]
fn prefix_cached_scan_equals_a_full_forward() {
    let f = fixture();
    let mut loaded = model::load(&ModelSpec::HfDir(f.model.clone()), &Device::Cpu, DType::F32).unwrap();
    let tok = loaded.tokenizer.clone().unwrap();
    let windows = text::windows(&text::tokenize_file(&tok, &f.calib, Some(200)).unwrap(), 64);
    let placement = scan::placement(&loaded.model, &windows).unwrap();
    let base = scan::baseline(&loaded.model, &windows, 16, placement).unwrap();
    let hidden = indicatif::ProgressBar::hidden();
    let refs = eval::references(&loaded.model, &windows, 16, &hidden).unwrap();
    let mut times = StepTimes::new(false);
    for id in [LayerId::block(1, LayerKind::FfnDown), LayerId::block(0, LayerKind::AttnQ), LayerId::output()] {
        loaded.model.set_precision(id, Precision::Nf4).unwrap();
        let cached = scan::stats_from(&loaded.model, &base, id.block.unwrap_or(2), &mut times).unwrap();
        let full = eval::score(&loaded.model, &windows, Some(&refs), &hidden).unwrap();
        loaded.model.set_precision(id, Precision::F16).unwrap();
        assert_eq!(cached.len(), full.len());
        for (c, u) in cached.iter().zip(&full) {
            assert!((c.nll - u.nll).abs() < 1e-5, "{id}: nll {} vs {}", c.nll, u.nll);
            assert!((c.kld.unwrap() - u.kld.unwrap()).abs() < 1e-6, "{id}: kld {:?} vs {:?}", c.kld, u.kld);
        }
        assert!(cached.iter().any(|s| s.kld.unwrap() > 0.0), "{id}: quantizing changed nothing");
    }
}

fn items_without_timing(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("seconds");
            }
            v
        })
        .collect()
}

#[test]
fn a_resumed_scan_ends_like_an_uninterrupted_one() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (full, cut) = (dir.path().join("full"), dir.path().join("cut"));
    sensitivity(&f, &full, &["--budget-gb", "0.00012"]).success();
    for name in [
        "scan.jsonl",
        "plan.yaml",
        "plan.tensor-types.txt",
        "frontier.csv",
        "summary.json",
        "report.md",
        "frontier_memory.svg",
        "sensitivity_heatmap.svg",
    ] {
        assert!(full.join(name).is_file(), "{name} missing");
    }
    // A run killed after 7 items, the 8th half written.
    std::fs::create_dir(&cut).unwrap();
    let journal = std::fs::read_to_string(full.join("scan.jsonl")).unwrap();
    let mut kept: String = journal.lines().take(8).map(|l| format!("{l}\n")).collect();
    kept.push_str(&journal.lines().nth(8).unwrap()[..20]);
    std::fs::write(cut.join("scan.jsonl"), kept).unwrap();
    sensitivity(&f, &cut, &["--budget-gb", "0.00012"]).code(2);
    sensitivity(&f, &cut, &["--budget-gb", "0.00012", "--resume"]).success();
    assert_eq!(items_without_timing(&cut.join("scan.jsonl")), items_without_timing(&full.join("scan.jsonl")));
    assert_eq!(
        std::fs::read_to_string(cut.join("plan.yaml")).unwrap(),
        std::fs::read_to_string(full.join("plan.yaml")).unwrap()
    );
    // The plan loads in eval.
    Command::cargo_bin("minilab")
        .unwrap()
        .args(["eval", "--model"])
        .arg(&f.model)
        .arg("--text")
        .arg(&f.text)
        .args(["--ctx", "64", "--json", "--plan"])
        .arg(full.join("plan.yaml"))
        .assert()
        .success();
}

#[test]
fn bad_budgets_and_settings_exit_2_and_overwrite_nothing() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (args, want) in [
        (vec!["--budget-gb", "0"], "positive"),
        (vec!["--budget-gb", "-1"], "positive"),
        (vec!["--budget-gb", "0.00000001"], "below the minimum"),
        (vec!["--budget-gb", "0.0001", "--formats", "int8,q5"], "unknown format `q5`"),
        (vec!["--budget-gb", "0.0001", "--metric", "bleu"], "unknown metric"),
        (vec!["--budget-gb", "0.0001", "--strategy", "magic"], "unknown strategy"),
        (vec!["--budget-gb", "0.0001", "--min-decode-tps", "0"], "positive number of tokens/s"),
        (vec!["--budget-gb", "0.0001", "--max-decode-ms", "NaN"], "positive number of ms"),
        (vec!["--budget-gb", "0.0001", "--max-decode-ms", "-2"], "positive number of ms"),
        (vec!["--budget-gb", "0.0001", "--max-decode-ms", "5", "--speed-margin", "80"], "percentage in 0..50"),
        (vec!["--budget-gb", "0.0001", "--max-decode-ms", "5", "--speed-margin", "NaN"], "percentage in 0..50"),
    ] {
        let a = sensitivity(&f, &out, &args).code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains(want) && err.lines().count() == 1, "{args:?}: {err}");
        assert!(!out.join("scan.jsonl").exists(), "{args:?} wrote output");
    }
    sensitivity(&f, &out, &["--budget-gb", "0.00012"]).success();
    let before = std::fs::read(out.join("scan.jsonl")).unwrap();
    let a = sensitivity(&f, &out, &["--budget-gb", "0.00012", "--resume", "--formats", "nf4"]).code(2);
    assert!(String::from_utf8_lossy(&a.get_output().stderr).contains("different model or settings"));
    assert_eq!(std::fs::read(out.join("scan.jsonl")).unwrap(), before, "a refused resume changed the journal");
}

#[test]
fn a_speed_limit_is_kept_and_an_impossible_one_names_what_is_possible() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    sensitivity(&f, &out, &["--budget-gb", "0.00012"]).success();
    assert!(!out.join("time_model.json").exists(), "--no-speed and no limit: no time model");
    let plan = std::fs::read(out.join("plan.yaml")).unwrap();
    let a = sensitivity(&f, &out, &["--budget-gb", "0.00012", "--resume", "--min-decode-tps", "1e9"]).code(2);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("cannot be met within the budget") && last.contains("the fastest plan that fits"), "{err}");
    assert_eq!(std::fs::read(out.join("plan.yaml")).unwrap(), plan, "a refused limit changed the plan");
    let path = out.join("time_model.json");
    let time_model = || serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).unwrap();
    let tm = time_model();
    assert!(tm["fixed_us"].as_f64().unwrap() >= 0.0 && !tm["linears"].as_array().unwrap().is_empty());
    // A limit every plan meets: the chosen plan is the memory-only one, and the summary says so.
    sensitivity(&f, &out, &["--budget-gb", "0.00012", "--resume", "--max-decode-ms", "1000"]).success();
    assert_eq!(std::fs::read(out.join("plan.yaml")).unwrap(), plan, "a loose limit changed the plan");
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["speed"]["max_decode_us"].as_f64(), Some(1e6));
    assert!(s["speed"]["predicted_decode_tps"].as_f64().unwrap() >= 1.0);
    let csv = std::fs::read_to_string(out.join("frontier.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with("predicted_decode_tps"));
    assert!(csv.lines().skip(1).all(|l| !l.ends_with(',')), "every point has a prediction: {csv}");
    assert!(out.join("frontier_time.svg").exists());
    // Other kernel settings: the cached time model no longer holds and is measured again under them.
    let resume_unfolded = || {
        Command::cargo_bin("minilab")
            .unwrap()
            .args(f.sensitivity_args(&out))
            .args(["--baselines", "2", "--budget-gb", "0.00012", "--resume", "--max-decode-ms", "1000"])
            .env("MINILAB_FUSE_NORM", "0")
            .assert()
            .success();
    };
    assert_eq!(time_model()["key"]["settings"], serde_json::json!([]));
    resume_unfolded();
    assert_eq!(time_model()["key"]["settings"], serde_json::json!(["MINILAB_FUSE_NORM=0"]));
    // The split groups' charges: none on the CPU, where no group is fused; a tampered one is
    // measured again.
    let splits = || ["qkv_us", "gate_up_us"].map(|k| time_model()["splits"][k].as_f64().expect("a measured charge"));
    assert_eq!(splits(), [0.0, 0.0], "nothing is fused on the CPU: no charge");
    let mut tm = time_model();
    tm["splits"]["qkv_us"] = serde_json::json!(-5.0);
    std::fs::write(&path, serde_json::to_vec(&tm).unwrap()).unwrap();
    resume_unfolded();
    assert!(splits().iter().all(|&v| v >= 0.0), "a tampered charge was used: {:?}", splits());
}

/// A run whose frontier is timed reports the uniform points' drift from the time model's own steps
/// beside the mixed points' errors (the fixture's runs above skip timing with `--no-speed`).
#[test]
fn a_timed_frontier_reports_the_machines_drift() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut args: Vec<std::ffi::OsString> =
        f.sensitivity_args(&out).into_iter().filter(|a| a != "--no-speed").collect();
    let at = args.iter().position(|a| a == "--max-tokens").unwrap();
    args[at + 1] = "1024".into();
    Command::cargo_bin("minilab")
        .unwrap()
        .args(&args)
        .args(["--budget-gb", "0.00012", "--bench-reps", "1"])
        .assert()
        .success();
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let drift =
        ["drift_pct_median", "drift_pct_max"].map(|k| s["speed"][k].as_f64().expect("the uniform points' drift"));
    assert!(drift[0] >= 0.0 && drift[1] >= drift[0], "{drift:?}");
    assert!(s["speed"]["error_pct_median"].as_f64().is_some(), "{}", s["speed"]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("how far this machine drifted during the run"), "{report}");
}
