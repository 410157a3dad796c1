//! `DIR/.lock`: one run at a time per output folder.
//!
//! The lock file holds the owner's pid and is created atomically (`create_new`). A lock whose pid
//! is no longer alive (a killed run) is replaced, with a note on stderr. The lock is removed when
//! the [`OutLock`] is dropped, so every return path of a run releases it; a run stopped by a
//! signal releases it with [`release_held`].

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The name of the lock file inside an output folder.
pub const LOCK_NAME: &str = ".lock";

/// The lock this process holds, for [`release_held`] (a signal handler cannot run destructors).
static HELD: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A held lock on an output folder; dropping it removes the lock file.
#[derive(Debug)]
pub struct OutLock {
    path: PathBuf,
}

impl OutLock {
    /// Takes the lock of `dir` (which must exist), replacing a stale one. Another live run holding
    /// it is a user error (exit 2).
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::acquire_named(dir, LOCK_NAME)
    }

    /// Takes the lock file `name` of `dir`: shards of one run share a folder, each with its own
    /// lock.
    pub fn acquire_named(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        match create(&path) {
            Ok(lock) => return Ok(lock),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(out_dir_error("cannot write in the output folder", dir, e)),
        }
        // A pid is a few bytes: read no more, so a lock replaced by a link to /dev/zero or a huge
        // file cannot stall or exhaust memory.
        let text = read_head(&path, 64);
        let owner = text.trim().parse::<u32>().ok().filter(|&p| p > 0 && p <= i32::MAX as u32);
        if let Some(pid) = owner.filter(|&p| alive(p)) {
            return Err(Error::input(format!(
                "{} is in use by another minilab run (pid {pid}); wait for it or choose another --out \
                 (if pid {pid} is not minilab, delete {})",
                dir.display(),
                path.display()
            )));
        }
        let who = owner.map_or_else(|| "an unreadable pid".to_string(), |p| format!("pid {p}, no longer running"));
        let _ = writeln!(std::io::stderr(), "note: replacing the stale lock {} ({who})", path.display());
        // Two runs replacing the same stale lock at the same instant could both proceed; the window
        // is a few microseconds after a crash, which we accept.
        std::fs::remove_file(&path).or_else(not_found_ok).map_err(|e| Error::io(&path, e))?;
        create(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::input(format!("{} was just taken by another minilab run; choose another --out", dir.display()))
            }
            _ => Error::io(&path, e),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for OutLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Ok(mut held) = HELD.lock() {
            if held.as_deref() == Some(self.path.as_path()) {
                *held = None;
            }
        }
    }
}

/// Removes the temp files (`.NAME.tmp.PID.N`, see `report::write_atomic`) that a killed run left in
/// `dir`. Call with the lock held: no other run writes there then.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((_, tail)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp.")) else { continue };
        let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let Some((pid, n)) = tail.split_once('.') else { continue };
        // Shards of one run write into one folder: only a dead writer's temp files are leftovers.
        let dead = pid.parse::<u32>().is_ok_and(|p| !alive(p));
        if number(pid) && number(n) && pid != std::process::id().to_string() && dead {
            tracing::info!("removing {}, left by an interrupted run", e.path().display());
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes the lock this process holds, if any: for an exit that skips destructors.
pub fn release_held() {
    // try_lock: never block a signal path on a lock the interrupted code may hold.
    if let Ok(mut held) = HELD.try_lock() {
        if let Some(p) = held.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The first `n` bytes of `path` as text (empty when unreadable).
fn read_head(path: &Path, n: u64) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    // Not through a planted link, and never blocking on a FIFO planted at the lock's name.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut opts, libc::O_NOFOLLOW | libc::O_NONBLOCK);
    if let Ok(f) = opts.open(path) {
        let _ = f.take(n).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Creates the lock file with our pid; fails with `AlreadyExists` if there is one.
fn create(path: &Path) -> std::io::Result<OutLock> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let lock = OutLock { path: path.to_path_buf() };
    f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    f.sync_all()?;
    if let Ok(mut held) = HELD.lock() {
        *held = Some(path.to_path_buf());
    }
    Ok(lock)
}

/// An I/O error on the output folder as one line starting with `what`, exit code kept (a missing
/// or forbidden folder is the user's to fix, a full disk is not).
pub fn out_dir_error(what: &str, dir: &Path, e: std::io::Error) -> Error {
    match Error::io(dir, e) {
        Error::Input(m) => Error::Input(format!("{what} {m}")),
        Error::Runtime(m) => Error::Runtime(format!("{what} {m}")),
        other => other,
    }
}

fn not_found_ok(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Whether process `pid` exists (a zombie counts until it is reaped).
fn alive(pid: u32) -> bool {
    if pid == std::process::id() {
        // Our own pid in a lock we did not write: left by an earlier process with a reused pid.
        return false;
    }
    #[cfg(target_os = "linux")]
    {
        Path::new(&format!("/proc/{pid}")).exists()
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        // SAFETY: signal 0 only checks that the process exists; pid is positive (never a group).
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn a_second_lock_is_refused_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let lock = OutLock::acquire(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(lock.path()).unwrap().trim(), std::process::id().to_string());
        // Held by a live process (pid 1 in its own namespace is always alive).
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(LOCK_NAME), "1\n").unwrap();
        let e = OutLock::acquire(other.path()).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("in use by another minilab run (pid 1)"), "{e}");
        drop(lock);
        assert!(!dir.path().join(LOCK_NAME).exists());
    }

    #[test]
    fn stale_and_garbled_locks_are_replaced() {
        for content in [format!("{}\n", dead_pid()), "garbage".into(), String::new(), "0".into(), "-1".into()] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(LOCK_NAME), &content).unwrap();
            let lock = OutLock::acquire(dir.path()).unwrap();
            assert_eq!(std::fs::read_to_string(lock.path()).unwrap().trim(), std::process::id().to_string());
        }
    }

    #[test]
    #[cfg(unix)]
    fn planted_fifos_and_links_at_the_lock_name_neither_block_nor_leak() {
        // A FIFO would block a plain open forever; a link to /dev/zero would be read forever.
        let dir = tempfile::tempdir().unwrap();
        let fifo = std::ffi::CString::new(dir.path().join(LOCK_NAME).to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let lock = OutLock::acquire(dir.path()).unwrap();
        assert_eq!(std::fs::read_to_string(lock.path()).unwrap().trim(), std::process::id().to_string());
        let other = tempfile::tempdir().unwrap();
        let victim = other.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, other.path().join(LOCK_NAME)).unwrap();
        let lock = OutLock::acquire(other.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep", "wrote through a planted link");
        drop(lock);
        assert!(victim.exists());
        std::os::unix::fs::symlink("/dev/zero", other.path().join(LOCK_NAME)).unwrap();
        OutLock::acquire(other.path()).unwrap();
    }

    #[test]
    fn only_leftover_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // pid 1 is alive: its temp file may be another shard's write in progress.
        let keep = ["plan.yaml", ".plan.yaml.tmp.x.1", "a.tmp.12.3", ".lock", ".notes.tmp.12", ".summary.json.tmp.1.0"];
        let dead = dead_pid();
        let stale = [format!(".plan.yaml.tmp.{dead}.0"), format!(".scan.jsonl.tmp.{dead}.42")];
        for n in keep.iter().copied().chain(stale.iter().map(String::as_str)) {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        remove_stale_temps(dir.path());
        let mut left: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut want: Vec<_> = keep.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(left, want);
    }
}
