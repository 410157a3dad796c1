//! `minilab eval --json` on the demo model: the JSON contract of DESIGN.md §4 and the expected
//! ordering of the formats (int8 within +1 % of f16, nf4 worse than int8, bytes f16 > int8 > nf4).

mod common;

use assert_cmd::Command;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// `minilab eval --json ARGS`, run once per distinct ARGS: the tests share results, and one run at a
/// time keeps two processes from fighting over the cores.
fn eval(args: &[&str]) -> Value {
    static RUNS: Mutex<BTreeMap<Vec<String>, Value>> = Mutex::new(BTreeMap::new());
    let mut runs = RUNS.lock().unwrap_or_else(|e| e.into_inner());
    let key: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if let Some(v) = runs.get(&key) {
        return v.clone();
    }
    let v = run_eval(args);
    runs.insert(key, v.clone());
    v
}

/// Runs `minilab eval --json ARGS` on the demo model and the held-out text; stdout must be exactly
/// one JSON object.
fn run_eval(args: &[&str]) -> Value {
    let model = common::demo_model();
    let out = Command::cargo_bin("minilab")
        .unwrap()
        .current_dir(common::repo(""))
        .arg("eval")
        .arg("--model")
        .arg(&model)
        .args(["--text", "eval-data/heldout.txt", "--json"])
        .args(args)
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    assert!(out.status.success(), "minilab eval {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    // serde_json::from_str rejects anything but whitespace after the document.
    let doc: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout:?}"));
    assert!(doc.is_object(), "{doc}");
    for key in ["ppl", "ppl_stderr", "tokens", "weight_bytes", "kld"] {
        assert!(doc.get(key).is_some(), "missing `{key}` in {doc}");
    }
    let ppl = doc["ppl"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "ppl {ppl}");
    let se = doc["ppl_stderr"].as_f64().unwrap();
    assert!(se.is_finite() && se > 0.0, "ppl_stderr {se}");
    assert!(doc["tokens"].as_u64().unwrap() > 0);
    assert!(doc["weight_bytes"].as_u64().unwrap() > 0);
    eprintln!(
        "eval {args:?}: ppl {ppl:.4} ± {se:.4}, {} tokens, {} weight bytes, kld {}",
        doc["tokens"], doc["weight_bytes"], doc["kld"]
    );
    doc
}

fn ppl(d: &Value) -> f64 {
    d["ppl"].as_f64().unwrap()
}

fn bytes(d: &Value) -> u64 {
    d["weight_bytes"].as_u64().unwrap()
}

#[test]
fn formats_order_on_1024_tokens() {
    let f16 = eval(&["--max-tokens", "1024", "--precision", "f16"]);
    let int8 = eval(&["--max-tokens", "1024", "--precision", "int8"]);
    let nf4 = eval(&["--max-tokens", "1024", "--precision", "nf4"]);
    for d in [&f16, &int8, &nf4] {
        assert!(d["kld"].is_null(), "kld must be null without --kld: {d}");
        // 1024 tokens in windows of 512: the first token of each window is not scored
        assert_eq!(d["tokens"].as_u64(), Some(1022), "{d}");
    }
    let (p16, p8, p4) = (ppl(&f16), ppl(&int8), ppl(&nf4));
    assert!(p8 <= p16 * 1.01, "int8 PPL {p8} is more than +1 % over f16 {p16}");
    assert!(p4 > p8, "nf4 PPL {p4} is not above int8 {p8}");
    let (b16, b8, b4) = (bytes(&f16), bytes(&int8), bytes(&nf4));
    assert!(b16 > b8 && b8 > b4, "weight bytes f16 {b16}, int8 {b8}, nf4 {b4}");
    eprintln!(
        "PPL f16 {p16:.4}  int8 {p8:.4} ({:+.2} %)  nf4 {p4:.4} ({:+.2} %)",
        100.0 * (p8 / p16 - 1.0),
        100.0 * (p4 / p16 - 1.0)
    );
}

#[test]
fn kld_of_f16_against_itself_is_exactly_zero() {
    let plain = eval(&["--max-tokens", "128", "--precision", "f16"]);
    let d = eval(&["--max-tokens", "128", "--precision", "f16", "--kld"]);
    let k = &d["kld"];
    assert!(k.is_object(), "kld must be an object with --kld: {d}");
    for key in ["mean", "median", "p99"] {
        assert_eq!(k[key].as_f64(), Some(0.0), "kld.{key} of f16 vs f16: {k}");
    }
    assert_eq!(k["top1_agreement"].as_f64(), Some(1.0), "{k}");
    assert_eq!(ppl(&d), ppl(&plain), "--kld must not change the PPL");
    assert_eq!(d["tokens"], plain["tokens"]);

    let q = eval(&["--max-tokens", "128", "--precision", "nf4", "--kld"]);
    let k = &q["kld"];
    let mean = k["mean"].as_f64().unwrap();
    let top1 = k["top1_agreement"].as_f64().unwrap();
    assert!(mean > 0.0 && mean.is_finite(), "nf4 kld mean {mean}");
    assert!(k["p99"].as_f64().unwrap() >= k["median"].as_f64().unwrap(), "{k}");
    assert!((0.0..1.0).contains(&top1), "nf4 top-1 agreement {top1}");
}

#[test]
fn mixed_plan_runs() {
    let plan = "configs/plans/mixed.yaml";
    let d = eval(&["--max-tokens", "128", "--plan", plan]);
    let layers = d["layers"].as_str().unwrap_or_default();
    for fmt in ["f16", "int8", "nf4"] {
        assert!(layers.contains(fmt), "mixed.yaml should use {fmt}: {layers}");
    }
    let f16 = eval(&["--max-tokens", "128", "--precision", "f16"]);
    let nf4 = eval(&["--max-tokens", "128", "--precision", "nf4", "--kld"]);
    assert!(
        bytes(&f16) > bytes(&d) && bytes(&d) > bytes(&nf4),
        "mixed weight bytes {} not between nf4 {} and f16 {}",
        bytes(&d),
        bytes(&nf4),
        bytes(&f16)
    );
    assert!(ppl(&d) < ppl(&nf4), "mixed PPL {} not below all-nf4 {}", ppl(&d), ppl(&nf4));
}
