//! `results/benchmark_log.csv`: one row per bench test, appended by every run.
//!
//! Columns: `timestamp` (UTC, RFC 3339), `model`, `precision`, `device`, `dtype`, `threads`,
//! `test`, `n_prompt`, `n_gen`, `depth`, `reps`, `avg_ts`, `stddev_ts`, `ttft_ms`,
//! `weight_bytes`, `device_bytes`, `device_peak_bytes`, `bandwidth_gbs`, `roofline_pct`, `version`.
//! `version` is the crate version, followed by `+NAME=value` for each kernel setting of the
//! environment in effect (`env_vars::in_effect`), so that rows measured with a knob set say so.

use super::BenchRecord;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// The header line of the log.
pub const HEADER: &str = "timestamp,model,precision,device,dtype,threads,test,n_prompt,n_gen,depth,reps,avg_ts,stddev_ts,ttft_ms,weight_bytes,device_bytes,device_peak_bytes,bandwidth_gbs,roofline_pct,version";

fn field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One CSV line of `r` at time `timestamp`.
pub fn line(r: &BenchRecord, timestamp: &str) -> String {
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    format!(
        "{timestamp},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{},{},{},{},{:.2},{},{}",
        field(&r.model),
        field(&r.precision),
        r.device,
        r.dtype,
        r.threads,
        r.test,
        r.n_prompt,
        r.n_gen,
        r.depth,
        r.reps,
        r.avg_ts,
        r.stddev_ts,
        opt(r.ttft_ms),
        r.weight_bytes,
        r.device_bytes,
        r.device_peak_bytes,
        r.bandwidth / 1e9,
        opt(r.roofline_pct),
        field(&version(r))
    )
}

/// The crate version and the run's kernel settings: `0.1.0+MINILAB_PREFETCH=bulk`.
fn version(r: &BenchRecord) -> String {
    std::iter::once(env!("CARGO_PKG_VERSION").to_string())
        .chain(r.settings.iter().cloned())
        .collect::<Vec<_>>()
        .join("+")
}

/// The results log, opened for appending before the benchmark runs, so that a log that cannot
/// be written (a folder, no permission) fails at once rather than after minutes of timing.
pub struct Log {
    path: std::path::PathBuf,
    file: std::fs::File,
    new: bool,
}

impl Log {
    /// Opens (creating it and its folder if needed) the log at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        let new = file.metadata().map_err(|e| Error::io(path, e))?.len() == 0;
        Ok(Self { path: path.to_path_buf(), file, new })
    }

    /// Appends `records` (after the header when the file was empty).
    pub fn append(mut self, records: &[BenchRecord], timestamp: &str) -> Result<()> {
        let mut text = String::new();
        if self.new {
            text.push_str(HEADER);
            text.push('\n');
        }
        for r in records {
            text.push_str(&line(r, timestamp));
            text.push('\n');
        }
        // One write per run keeps concurrent appenders from interleaving lines.
        self.file.write_all(text.as_bytes()).map_err(|e| Error::io(&self.path, e))
    }
}

/// Appends `records` to the log at `path`, writing the header first if the file is new or empty.
pub fn append(path: &Path, records: &[BenchRecord], timestamp: &str) -> Result<()> {
    Log::open(path)?.append(records, timestamp)
}
