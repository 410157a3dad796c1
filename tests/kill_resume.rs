//! A sensitivity scan killed (SIGKILL) at random points and resumed each time ends exactly where an
//! uninterrupted run does; Ctrl-C (SIGINT) stops after the item in progress with exit code 130 and
//! says how to resume.
//!
//! The kill points come from a seeded generator: set `MINILAB_KILL_SEED` to replay a failure.

mod common;

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tiny::{fixture, Fixture};

/// `minilab sensitivity` on the tiny model with a scan slow enough (~1 s) to be hit mid-way.
fn sensitivity(f: &Fixture, out: &Path, resume: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minilab"));
    cmd.args(["sensitivity", "--model"]).arg(&f.model).arg("--calib").arg(&f.calib).arg("--text").arg(&f.text);
    cmd.args(["--ctx", "256", "--calib-tokens", "2048", "--max-tokens", "256", "--frontier-points", "2"]);
    cmd.args(["--baselines", "2", "--no-speed", "--budget-gb", "0.00012", "--out"]).arg(out);
    if resume {
        cmd.arg("--resume");
    }
    cmd.env("RUST_BACKTRACE", "1").stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// Lines of `scan.jsonl` (header included), 0 while it does not exist.
fn journal_lines(out: &Path) -> usize {
    std::fs::read(out.join("scan.jsonl")).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Waits until the journal has `lines` lines or the child has exited; false if it exited.
fn wait_for_lines(child: &mut Child, out: &Path, lines: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while journal_lines(out) < lines {
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
    true
}

fn stderr_of(child: Child) -> (std::process::ExitStatus, String) {
    let o = child.wait_with_output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The scan items without their timing, which differs between runs.
fn items_without_timing(out: &Path) -> Vec<serde_json::Value> {
    common::scan_items(&out.join("scan.jsonl"))
}

fn seed() -> u64 {
    std::env::var("MINILAB_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6b696c6c)
}

#[test]
fn sigkill_at_five_random_points_then_resume_equals_an_uninterrupted_run() {
    let f = fixture();
    let (full, cut) = (f.dir.path().join("full"), f.dir.path().join("cut"));
    let t = Instant::now();
    let (status, err) = stderr_of(sensitivity(&f, &full, false).spawn().unwrap());
    assert!(status.success(), "{err}");
    let total = journal_lines(&full);
    eprintln!("uninterrupted run: {} items in {:.2}s", total - 1, t.elapsed().as_secs_f64());

    let seed = seed();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut mid_scan = 0;
    for k in 0..5 {
        let before = journal_lines(&cut);
        // Somewhere between "before the first new item" and "half of what is left".
        let target = before.max(1) + rng.random_range(0..=(total - before.max(1)) / 2);
        let extra_ms = rng.random_range(0..4u64);
        let mut child = sensitivity(&f, &cut, k > 0).spawn().unwrap();
        if wait_for_lines(&mut child, &cut, target) {
            std::thread::sleep(Duration::from_millis(extra_ms));
            let _ = child.kill(); // SIGKILL
        }
        let (status, err) = stderr_of(child);
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
        let after = journal_lines(&cut);
        eprintln!("seed {seed}: kill {k} at line {target} + {extra_ms} ms: {before} → {after} lines ({status})");
        assert!(after >= before, "a resume lost finished items");
        mid_scan += usize::from(after < total && status.code().is_none());
    }
    assert!(mid_scan >= 3, "only {mid_scan} of 5 kills landed mid-scan: is the scan too fast to test?");
    let (status, err) = stderr_of(sensitivity(&f, &cut, true).spawn().unwrap());
    assert!(status.success(), "{err}");
    assert_eq!(items_without_timing(&cut), items_without_timing(&full));
    let plan = |d: &Path| std::fs::read_to_string(d.join("plan.yaml")).unwrap();
    assert_eq!(plan(&cut), plan(&full));
    assert!(!cut.join(".lock").exists(), "lock left behind");
    let temps: Vec<_> = std::fs::read_dir(&cut)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
}

#[test]
fn ctrl_c_stops_after_the_item_in_progress_with_exit_130() {
    let f = fixture();
    let out = f.dir.path().join("run");
    let mut child = sensitivity(&f, &out, false).spawn().unwrap();
    assert!(wait_for_lines(&mut child, &out, 3), "the scan ended before it could be interrupted");
    // SAFETY: signalling our own child, whose pid is positive.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let (status, err) = stderr_of(child);
    assert_eq!(status.code(), Some(130), "{err}");
    let resume_lines: Vec<_> = err.lines().filter(|l| l.contains("--resume --out")).collect();
    assert_eq!(resume_lines.len(), 2, "startup line + one line on stopping: {err}");
    assert!(resume_lines[1].starts_with("interrupted:") && resume_lines[1].contains(&*out.to_string_lossy()), "{err}");
    assert!(!err.contains("panicked") && !err.contains("error:"), "{err}");
    let text = std::fs::read_to_string(out.join("scan.jsonl")).unwrap();
    assert!(text.ends_with('\n'), "the last item was not flushed whole");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    let n = text.lines().count();
    assert!(n >= 3, "{n} lines");
    assert!(!out.join(".lock").exists(), "lock left behind");
    assert!(!out.join("plan.yaml").exists(), "stopped in the scan, yet wrote a plan");
    // What the message says works.
    let (status, err) = stderr_of(sensitivity(&f, &out, true).spawn().unwrap());
    assert!(status.success(), "{err}");
    assert!(!err.contains("stale lock"), "{err}");
}
