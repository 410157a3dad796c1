//! Writers and plots: CSV/JSON/markdown and SVG. No maths here beyond what plotting needs.
//!
//! Every file a run leaves behind goes through [`write_atomic`], so a killed run never leaves a
//! half-written CSV or SVG that `minilab plot` or `--resume` would then trust.

pub mod console;
pub mod frontier;
pub mod heatmap;
pub mod plot;
#[cfg(test)]
mod plot_tests;
pub mod run;

pub use frontier::{frontier_markdown, pareto_front, read_frontier_csv, write_frontier_csv, FrontierPoint, PointKind};
pub use heatmap::{plot_heatmap, HeatCell, LAYER_KINDS};
pub use plot::{plot_frontier_memory, plot_frontier_speed};

use std::io::Write;
use std::path::{Path, PathBuf};

/// Why a report file could not be written, read or drawn; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}, line {line}: {msg}", path.display())]
    Parse { path: PathBuf, line: usize, msg: String },
    #[error("drawing {}: {msg}", path.display())]
    Plot { path: PathBuf, msg: String },
}

impl ReportError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn plot<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> Self + '_ {
        move |e| Self::Plot { path: path.to_path_buf(), msg: e.to_string() }
    }
}

/// Write `bytes` to `path` so that readers see either the old file or the whole new one.
///
/// The data goes to a temporary file in the same directory (same file system, so the rename is
/// atomic), is flushed to disk, and is then renamed over `path`. The temporary name carries a
/// random number and is created exclusively (`O_CREAT | O_EXCL`, which also refuses a symlink
/// planted at that name), so nobody can predict it or redirect the write elsewhere. The rename
/// replaces a symlink at `path` itself, never its target. On error the temporary file is removed
/// and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"))?;
    let (mut f, tmp) = create_temp(dir, &name.to_string_lossy())?;
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir/.NAME.tmp.PID.R` exclusively, R a random number (the shape
/// `sensitivity::lock::remove_stale_temps` cleans up after a killed run).
pub fn create_temp(dir: &Path, name: &str) -> std::io::Result<(std::fs::File, PathBuf)> {
    let mut last = None;
    for _ in 0..16 {
        let tmp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), rand::random::<u64>()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((f, tmp)),
            // Someone holds that name (or planted a link there): draw another.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// Run files (`summary.json`, `frontier.csv`, `scan.jsonl`) are far smaller than this.
pub const RUN_FILE_CAP: u64 = 256 << 20;

/// Reads a run file once, refusing more than [`RUN_FILE_CAP`] bytes or invalid UTF-8.
pub fn read_run_file(path: &Path) -> Result<String, ReportError> {
    use std::io::Read;
    let invalid = |msg: String| ReportError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, msg),
    };
    let mut bytes = Vec::new();
    let f = std::fs::File::open(path).map_err(ReportError::io(path))?;
    f.take(RUN_FILE_CAP + 1).read_to_end(&mut bytes).map_err(ReportError::io(path))?;
    if bytes.len() as u64 > RUN_FILE_CAP {
        return Err(invalid(format!("larger than {} (refused)", crate::error::human_bytes(RUN_FILE_CAP))));
    }
    String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".into()))
}

/// A GitHub-flavoured markdown table, columns padded so the raw text reads well too.
///
/// `|` in cells is escaped and newlines become spaces, so any label is safe; short rows are padded
/// with empty cells.
pub fn markdown_table<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    let clean = |s: &str| s.replace('|', "\\|").replace(['\r', '\n'], " ");
    let head: Vec<String> = headers.iter().map(|h| clean(h)).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..head.len()).map(|i| r.get(i).map_or(String::new(), |c| clean(c.as_ref()))).collect())
        .collect();
    let width: Vec<usize> = (0..head.len())
        .map(|i| body.iter().map(|r| r[i].chars().count()).chain([head[i].chars().count(), 3]).max().unwrap_or(3))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&width).map(|(c, &w)| format!("{c:<w$}")).collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&head);
    let rule: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
    out.push_str(&line(&rule));
    for r in &body {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        write_atomic(&p, b"first version, longer").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.txt")]);
        assert!(write_atomic(&dir.path().join("missing/x.txt"), b"x").is_err());
    }

    #[test]
    #[cfg(unix)]
    fn write_atomic_never_follows_planted_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let p = dir.path().join("out.txt");
        // A link at the target name is replaced, not written through.
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        // Temporary names are not predictable: two writes never draw the same one.
        let (_, a) = create_temp(dir.path(), "x").unwrap();
        let (_, b) = create_temp(dir.path(), "x").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn markdown_table_escapes_and_pads() {
        let t = markdown_table(&["layer", "score"], &[vec!["a|b", "0.5"], vec!["c"]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| layer | score |");
        assert_eq!(lines[1], "| ----- | ----- |");
        assert_eq!(lines[2], "| a\\|b  | 0.5   |");
        assert_eq!(lines[3], "| c     |       |");
    }
}
