//! The checks every hostile case makes: the exit code, exactly one `error:` line on stderr naming
//! what it must, no panic or backtrace text, and nothing changed outside the folders the command
//! may write to.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where the command's stdout goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stdout {
    /// Captured (must be empty on failure).
    Piped,
    /// `> /dev/full`.
    Full,
    /// `>&-`: descriptor 1 closed.
    Closed,
}

/// One hostile invocation.
pub struct Case {
    pub name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdout: Stdout,
    pub code: i32,
    pub wants: Vec<String>,
}

impl Case {
    /// A case expecting exit `code` with an error line containing every string of `wants`.
    pub fn new(name: &str, args: &[&str], code: i32, wants: &[&str]) -> Self {
        Self {
            name: name.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            stdout: Stdout::Piped,
            code,
            wants: wants.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// With stdout redirected as `s`.
    pub fn stdout(mut self, s: Stdout) -> Self {
        self.stdout = s;
        self
    }

    /// With an environment variable set on the child.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// `minilab ARGS` in `cwd`, with RUST_BACKTRACE on (so a panic would show a backtrace) and the
/// caller's log, hub and proxy settings removed.
pub fn command(cwd: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_minilab"));
    cmd.args(args).current_dir(cwd).env("RUST_BACKTRACE", "1").env("MINILAB_HUB_TIMEOUT_S", "2");
    for v in ["RUST_LOG", "HF_HUB_OFFLINE", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"] {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// Runs `case` in `cwd` and returns the problems found (empty: the case passed).
pub fn run_case(case: &Case, cwd: &Path) -> (Vec<String>, Output) {
    let mut cmd = command(cwd, &case.args);
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    match case.stdout {
        Stdout::Piped => cmd.stdout(Stdio::piped()),
        Stdout::Full => cmd.stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()),
        Stdout::Closed => {
            use std::os::unix::process::CommandExt;
            // SAFETY: only close(2), async-signal-safe, between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::close(1);
                    Ok(())
                })
            }
        }
    };
    let out = cmd.output().unwrap();
    (problems(case, &out), out)
}

/// What is wrong with `out` for `case`.
pub fn problems(case: &Case, out: &Output) -> Vec<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let mut p = Vec::new();
    if out.status.code() != Some(case.code) {
        p.push(format!("exit code {:?}, expected {}", out.status.code(), case.code));
    }
    if lines.len() != 1 || !lines[0].starts_with("error: ") {
        p.push(format!("stderr is not one `error:` line: {stderr:?}"));
    }
    for bad in ["panicked", "stack backtrace", "RUST_BACKTRACE", "lang_start"] {
        if stderr.contains(bad) {
            p.push(format!("stderr contains `{bad}`"));
        }
    }
    for w in &case.wants {
        if !stderr.contains(w.as_str()) {
            p.push(format!("the error does not name `{w}`: {stderr:?}"));
        }
    }
    if case.stdout == Stdout::Piped && case.code == 2 && !out.stdout.is_empty() {
        p.push(format!("stdout not empty: {:?}", String::from_utf8_lossy(&out.stdout)));
    }
    p
}

/// Every path under `dir` with its length and modification time, to see that nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((p, m.len(), m.modified().ok()));
        }
    }
    out.sort();
    out
}

/// Runs every case, each in a fresh empty working folder that must stay empty, and checks that
/// `inputs` is unchanged afterwards; panics with every failure listed.
pub fn run_all(cases: &[Case], inputs: &Path) {
    let before = snapshot(inputs);
    let mut failures = Vec::new();
    for case in cases {
        let cwd = tempfile::tempdir().unwrap();
        let (mut p, out) = run_case(case, cwd.path());
        let written = snapshot(cwd.path());
        if !written.is_empty() {
            p.push(format!("wrote in the working folder: {written:?}"));
        }
        let first = String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or_default().to_string();
        if p.is_empty() {
            eprintln!("ok  [{}] {first}", case.name);
        } else {
            failures.push(format!("[{}] minilab {}\n    {}", case.name, case.args.join(" "), p.join("\n    ")));
        }
    }
    let after = snapshot(inputs);
    if after != before {
        let changed: Vec<_> = after.iter().filter(|x| !before.contains(x)).collect();
        failures.push(format!("the inputs changed: {changed:?}"));
    }
    assert!(failures.is_empty(), "{} of {} case(s) failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// A copy of the tiny model folder `src` at `dst` with config.json edited by `edit`.
pub fn model_variant(src: &Path, dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    std::fs::create_dir_all(dst).unwrap();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dst.join("config.json"), cfg.to_string()).unwrap();
    dst.to_string_lossy().into_owned()
}

/// A 1 MiB tmpfs, unmounted when dropped; `None` (with a note) unless running as root where
/// mounting is allowed.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Mounts a [`Tmpfs`] for full-disk cases.
pub fn small_tmpfs() -> Option<Tmpfs> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: full-disk cases need root to mount a small tmpfs");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(dir.path()).status();
    if !st.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?)");
        return None;
    }
    Some(Tmpfs { dir })
}

/// Fills the file system of `dir` to the last byte.
pub fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(&[0]);
}
