//! Writers and plots: CSV/JSON/markdown and SVG. No maths here beyond what plotting needs.
//!
//! Every file a run leaves behind goes through [`write_atomic`], so a killed run never leaves a
//! half-written CSV or SVG that `minilab plot` or `--resume` would then trust.

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
use std::sync::atomic::{AtomicU64, Ordering};

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
/// The data goes to a uniquely named temporary file in the same directory (same file system, so the
/// rename is atomic), is flushed to disk, and is then renamed over `path`. On error the temporary
/// file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.tmp.{}.{n}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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
    fn markdown_table_escapes_and_pads() {
        let t = markdown_table(&["layer", "score"], &[vec!["a|b", "0.5"], vec!["c"]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| layer | score |");
        assert_eq!(lines[1], "| ----- | ----- |");
        assert_eq!(lines[2], "| a\\|b  | 0.5   |");
        assert_eq!(lines[3], "| c     |       |");
    }
}
