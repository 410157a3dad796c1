//! Safe outputs of `minilab sensitivity`: one run at a time per `--out` (a lock file with the pid; a
//! stale one from a killed run is replaced), the lock released on error paths, an unwritable
//! `--out` refused with one line and exit 2 before anything is written; and `minilab completions`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::tiny::{fixture, Fixture};

/// `minilab sensitivity` on the tiny model (a scan of a few seconds) into `out`, plus `extra`.
fn sensitivity(f: &Fixture, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minilab"));
    cmd.args(["sensitivity", "--model"]).arg(&f.model).arg("--calib").arg(&f.calib).arg("--text").arg(&f.text);
    cmd.args(["--ctx", "256", "--calib-tokens", "2048", "--max-tokens", "256", "--frontier-points", "2"]);
    cmd.args(["--baselines", "2", "--no-speed", "--budget-gb", "0.00012", "--out"]).arg(out).args(extra);
    cmd.env("RUST_BACKTRACE", "1").stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2 and exactly one `error:` line containing `want`, no panic.
fn assert_refused(o: &Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.lines().count() == 1 && err.starts_with("error: ") && err.contains(want), "want `{want}`: {err}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_second_run_into_a_busy_out_is_refused_and_a_stale_lock_is_replaced() {
    let f = fixture();
    let out = f.dir.path().join("run");
    let mut first = sensitivity(&f, &out, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(out.join("scan.jsonl")).map_or(0, |t| t.lines().count()) < 2 {
        assert!(first.try_wait().unwrap().is_none() && Instant::now() < deadline, "the first run ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(std::fs::read_to_string(out.join(".lock")).unwrap().trim(), first.id().to_string());
    for extra in [&[][..], &["--resume"]] {
        let o = sensitivity(&f, &out, extra).output().unwrap();
        assert_refused(&o, &format!("in use by another minilab run (pid {})", first.id()));
    }
    assert!(first.try_wait().unwrap().is_none(), "the scan finished too soon for this test");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(out.join(".lock").exists(), "SIGKILL cannot remove the lock");
    let o = sensitivity(&f, &out, &["--resume"]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("note: replacing the stale lock {}", out.join(".lock").display())), "{err}");
    assert!(err.contains("no longer running"), "{err}");
    assert!(!out.join(".lock").exists(), "lock left after a finished run");
    assert!(out.join("plan.yaml").is_file());
}

#[test]
fn error_paths_release_the_lock() {
    let f = fixture();
    let out = f.dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("scan.jsonl"), "{\"minilab_scan\":1,\"settings_hash\":\"x\",\"settings\":{}}\n").unwrap();
    assert_refused(&sensitivity(&f, &out, &[]).output().unwrap(), "pass --resume");
    assert_refused(&sensitivity(&f, &out, &["--resume"]).output().unwrap(), "different model or settings");
    assert_eq!(names(&out), vec!["scan.jsonl"], "the lock or other files were left");
}

#[test]
fn an_unwritable_out_is_one_line_exit_2_and_writes_nothing() {
    let f = fixture();
    // Tests run as root, which ignores permission bits: a path through a regular file cannot be
    // created by anyone.
    let file = f.dir.path().join("a-file");
    std::fs::write(&file, "keep me").unwrap();
    let before = names(f.dir.path());
    let cases = [
        (file.join("sub"), "cannot create the output folder"),
        (file.join("sub/deeper"), "cannot create the output folder"),
        (file.clone(), "is a file, not a folder"),
        (PathBuf::from("/proc/minilab-test"), "cannot create the output folder /proc/minilab-test"),
    ];
    for (out, want) in cases {
        let o = sensitivity(&f, &out, &[]).output().unwrap();
        assert_refused(&o, want);
        assert!(o.stdout.is_empty());
    }
    assert_eq!(names(f.dir.path()), before, "something was written");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn completions_are_printed_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = Command::new(env!("CARGO_BIN_EXE_minilab")).args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        assert!(script.contains("minilab") && script.contains("sensitivity"), "{shell}: {script}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_minilab")).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
