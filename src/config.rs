//! YAML config (`-c FILE`): every field optional; flags override it, it overrides the defaults.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The demo model fetched by `scripts/fetch-demo-model.sh`.
pub const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct-Q4_1.gguf";
/// Held-out evaluation text.
pub const DEFAULT_TEXT: &str = "eval-data/heldout.txt";
/// Calibration text for the sensitivity scan.
pub const DEFAULT_CALIB: &str = "eval-data/calib.txt";

/// Settings shared by every command.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: Option<String>,
    pub device: Option<String>,
    pub dtype: Option<String>,
    pub plan: Option<PathBuf>,
    pub precision: Option<String>,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub bench: BenchConfig,
    #[serde(default)]
    pub sensitivity: SensitivityConfig,
}

/// `eval` settings.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    pub text: Option<PathBuf>,
    pub ctx: Option<usize>,
    pub max_tokens: Option<usize>,
    pub kld: Option<bool>,
    pub kld_topk: Option<usize>,
}

/// `bench` settings.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    pub prompt: Option<Vec<usize>>,
    pub gen: Option<Vec<usize>>,
    pub depth: Option<usize>,
    pub reps: Option<usize>,
    pub log: Option<PathBuf>,
}

/// `sensitivity` settings.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SensitivityConfig {
    pub budget_gb: Option<f64>,
    pub formats: Option<Vec<String>>,
    pub metric: Option<String>,
    pub strategy: Option<String>,
    pub calib: Option<PathBuf>,
    pub calib_tokens: Option<usize>,
    pub text: Option<PathBuf>,
    pub max_tokens: Option<usize>,
    pub frontier_points: Option<usize>,
    pub out: Option<PathBuf>,
    pub min_decode_tps: Option<f64>,
    pub max_decode_ms: Option<f64>,
}

impl Config {
    /// Reads `path`, or the empty config when none is given.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        // Read once with a cap: `-c /dev/stdin` works, `-c /dev/zero` is refused.
        let text = crate::error::read_text_capped(path, crate::error::SMALL_FILE_CAP)?;
        serde_saphyr::from_str(&text).map_err(|e| {
            Error::input(format!("{}: invalid config: {}", path.display(), crate::error::one_line(&e.to_string())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse() {
        for entry in std::fs::read_dir("configs").unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "yaml") {
                Config::load(Some(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, "eval:\n  ctxx: 5\n").unwrap();
        let e = Config::load(Some(&p)).unwrap_err();
        assert!(e.to_string().contains("c.yaml") && e.to_string().contains("ctxx"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
