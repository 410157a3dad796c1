//! Sharded scans: N shards run as N concurrent processes into one folder, then `--merge`, give
//! the scan items and plan of an unsharded run; a killed shard resumes; a merge with a missing,
//! incomplete or mismatched shard exits 2 and writes nothing. Synthetic models run end to end and
//! say that their accuracy means nothing.

mod common;

use assert_cmd::Command;
use common::tiny::{fixture, Fixture};
use std::path::Path;
use std::process::Stdio;

fn cmd(f: &Fixture, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_minilab"));
    c.args(f.sensitivity_args(out)).args(["--baselines", "1", "--budget-gb", "0.00012"]).args(extra);
    c
}

fn run(f: &Fixture, out: &Path, extra: &[&str]) -> std::process::Output {
    cmd(f, out, extra).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn three_concurrent_shards_merge_into_the_unsharded_result() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (single, sharded) = (dir.path().join("single"), dir.path().join("sharded"));
    assert!(run(&f, &single, &[]).status.success());
    let children: Vec<_> = (0..3)
        .map(|i| cmd(&f, &sharded, &["--shard", &format!("{i}/3")]).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let sizes: Vec<usize> =
        (0..3).map(|i| common::scan_items(&sharded.join(format!("scan.shard-{i}-of-3.jsonl"))).len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), common::scan_items(&single.join("scan.jsonl")).len());
    assert!(sizes.iter().all(|&n| n > 0), "every shard got work: {sizes:?}");
    assert!(!sharded.join("plan.yaml").exists(), "a shard does not allocate");
    let o = run(&f, &sharded, &["--merge"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(common::scan_items(&sharded.join("scan.jsonl")), common::scan_items(&single.join("scan.jsonl")));
    let plan = |d: &Path| std::fs::read_to_string(d.join("plan.yaml")).unwrap();
    assert_eq!(plan(&sharded), plan(&single));
}

#[test]
fn a_killed_shard_resumes_and_bad_merges_write_nothing() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = run(&f, &out, &["--merge"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no shard journals"), "{}", stderr(&o));
    for i in [0, 2] {
        assert!(run(&f, &out, &["--shard", &format!("{i}/3")]).status.success());
    }
    let written = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    let before = written(&out);
    let o = run(&f, &out, &["--merge"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("shard 1/3 is missing"), "{}", stderr(&o));
    assert_eq!(written(&out), before, "a refused merge wrote something");

    // Shard 1 killed after two items, the third half written: the merge refuses, resume finishes.
    let full = dir.path().join("full");
    assert!(run(&f, &full, &["--shard", "1/3"]).status.success());
    let journal = std::fs::read_to_string(full.join("scan.shard-1-of-3.jsonl")).unwrap();
    let mut cut: String = journal.lines().take(3).map(|l| format!("{l}\n")).collect();
    cut.push_str(&journal.lines().nth(3).unwrap()[..15]);
    std::fs::write(out.join("scan.shard-1-of-3.jsonl"), cut).unwrap();
    let o = run(&f, &out, &["--merge"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("shard 1/3 is incomplete (2 of"), "{}", stderr(&o));
    assert!(!out.join("plan.yaml").exists());
    let o = run(&f, &out, &["--shard", "1/3"]);
    assert_eq!(o.status.code(), Some(2), "no --resume: refused");
    assert!(run(&f, &out, &["--shard", "1/3", "--resume"]).status.success());
    assert_eq!(
        common::scan_items(&out.join("scan.shard-1-of-3.jsonl")),
        common::scan_items(&full.join("scan.shard-1-of-3.jsonl"))
    );

    // A shard run with other settings is named.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for i in 0..3 {
        let name = format!("scan.shard-{i}-of-3.jsonl");
        std::fs::copy(out.join(&name), other.join(&name)).unwrap();
    }
    std::fs::remove_file(other.join("scan.shard-2-of-3.jsonl")).unwrap();
    assert!(run(&f, &other, &["--shard", "2/3", "--kld-topk", "8"]).status.success());
    let o = run(&f, &other, &["--merge"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("shard 2/3") && e.contains("kld_topk was 8 and is now 64"), "{e}");
    assert!(!other.join("scan.jsonl").exists() && !other.join("plan.yaml").exists());

    assert!(run(&f, &out, &["--merge"]).status.success());
    assert!(out.join("plan.yaml").is_file() && out.join("report.md").is_file());
    for bad in ["3/3", "1/0", "x", "-1/2"] {
        let o = run(&f, &out, &["--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "--shard {bad}");
        assert!(!stderr(&o).contains("panicked"));
    }
}

#[test]
fn synthetic_models_run_end_to_end_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syn");
    let base =
        ["sensitivity", "--model", "synthetic:tiny", "--ctx", "32", "--calib-tokens", "64", "--max-tokens", "64"];
    let a = Command::cargo_bin("minilab").unwrap().args(base).args(["--budget-gb", "1", "--out"]).arg(&out).assert();
    let e = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    a.code(2);
    assert!(e.contains("--calib synthetic --text synthetic"), "{e}");
    Command::cargo_bin("minilab")
        .unwrap()
        .args(base)
        .args(["--calib", "synthetic", "--text", "synthetic", "--frontier-points", "1", "--baselines", "1"])
        .args(["--no-speed", "--budget-gb", "0.0001", "--out"])
        .arg(&out)
        .assert()
        .success();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let warning = "synthetic weights: timings only, accuracy is meaningless";
    assert_eq!(summary["warning"], warning);
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains(warning));
    assert!(std::fs::read_to_string(out.join("plan.yaml")).unwrap().contains(&warning.to_uppercase()));
}
