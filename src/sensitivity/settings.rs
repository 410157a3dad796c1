//! The settings of a sensitivity run: plain values a program fills in (the command line maps its
//! flags and config onto them), checked against the model before any work starts.

use super::scan::Metric;
use super::shard::Shard;
use crate::error::{Error, Result};
use crate::eval::synthetic;
use crate::model::Model;
use crate::quant::Precision;
use std::path::PathBuf;

/// How formats are allocated under the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Best score reduction per byte first.
    Greedy,
    /// Exact knapsack (dynamic programming over bytes).
    Optimal,
}

impl Strategy {
    /// The name used in flags and outputs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Greedy => "greedy",
            Self::Optimal => "optimal",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "greedy" => Ok(Self::Greedy),
            "optimal" => Ok(Self::Optimal),
            _ => Err(format!("unknown strategy `{s}` (expected greedy or optimal)")),
        }
    }
}

/// Everything a run needs besides the model.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Resident weight bytes the plan may use.
    pub budget_bytes: u64,
    /// Formats to squeeze into (f16 is always a choice).
    pub formats: Vec<Precision>,
    pub metric: Metric,
    pub strategy: Strategy,
    /// Calibration text (`synthetic` for the seeded stream) and the tokens scanned.
    pub calib: PathBuf,
    pub calib_tokens: usize,
    /// Held-out text and the tokens evaluated per configuration.
    pub text: PathBuf,
    pub max_tokens: usize,
    /// Window length in tokens.
    pub ctx: usize,
    /// Budgets swept between all-cheapest and all-f16.
    pub frontier_points: usize,
    /// Random plans of the chosen plan's size measured as a baseline.
    pub baselines: usize,
    /// Timed repetitions of pp512/tg128 per frontier point (0: no speed measurements).
    pub bench_reps: usize,
    /// Reference log-probs kept per position for the KL divergence.
    pub kld_topk: usize,
    pub out: PathBuf,
    /// Continue the journal in `out`.
    pub resume: bool,
    /// Scan only this slice of the items, then stop.
    pub shard: Option<Shard>,
    /// Finish a sharded scan from its journals.
    pub merge: bool,
    /// Synchronize the device after every step so the step-time breakdown is exact.
    pub exact_timing: bool,
    /// Most predicted µs per decoded token the plan may take (`--min-decode-tps`,
    /// `--max-decode-ms`); `None`: memory is the only limit.
    pub max_decode_us: Option<f64>,
    /// Fraction of `max_decode_us` kept in reserve for the time model's error: plans are made for
    /// `max_decode_us × (1 − speed_margin)`.
    pub speed_margin: f64,
}

/// Largest `--kld-topk`: the device top-k sorts chunks of twice this many logits.
pub const MAX_KLD_TOPK: usize = 1024;

impl Settings {
    /// Defaults for everything but the budget and the output folder.
    pub fn new(budget_bytes: u64, out: PathBuf) -> Self {
        Self {
            budget_bytes,
            formats: vec![Precision::Int8, Precision::Nf4],
            metric: Metric::Kld,
            strategy: Strategy::Greedy,
            calib: crate::config::DEFAULT_CALIB.into(),
            calib_tokens: 4096,
            text: crate::config::DEFAULT_TEXT.into(),
            max_tokens: 8192,
            ctx: 512,
            frontier_points: 8,
            baselines: 5,
            bench_reps: 2,
            kld_topk: 64,
            out,
            resume: false,
            shard: None,
            merge: false,
            exact_timing: false,
            max_decode_us: None,
            speed_margin: 0.03,
        }
    }

    /// The time limit the allocator plans for: the user's less the margin.
    pub fn planned_decode_us(&self) -> Option<f64> {
        self.max_decode_us.map(|us| us * (1.0 - self.speed_margin))
    }

    /// Whether a decode-time model is measured: for a speed limit, or to predict the frontier's
    /// measured speeds.
    pub fn wants_time_model(&self) -> bool {
        self.max_decode_us.is_some() || self.bench_reps > 0
    }

    /// Whether the texts are the synthetic stream (every output then carries the warning).
    pub fn synthetic_text(&self) -> bool {
        synthetic::is_synthetic(&self.calib) || synthetic::is_synthetic(&self.text)
    }

    /// Checks the settings against `model` (exit 2 naming the flag).
    pub fn check(&self, model: &Model, synthetic_model: bool) -> Result<()> {
        let bad = |m: String| Err(Error::input(m));
        let cfg = model.config();
        if self.budget_bytes == 0 {
            return bad("--budget-gb must be a positive number of GB (10⁹ bytes)".into());
        }
        if self.formats.is_empty() || self.formats.contains(&Precision::F16) {
            return bad(
                "--formats lists the formats to squeeze into (int8, nf4, nf4_dq); f16 is always a choice".into()
            );
        }
        if self.ctx < 2 || self.ctx > cfg.max_position_embeddings {
            return bad(format!(
                "--ctx must be in 2..={} (the model's context), got {}",
                cfg.max_position_embeddings, self.ctx
            ));
        }
        let topk_max = MAX_KLD_TOPK.min(cfg.vocab_size);
        if self.kld_topk == 0 || self.kld_topk > topk_max {
            return bad(format!("--kld-topk must be in 1..={topk_max}, got {}", self.kld_topk));
        }
        for (flag, n) in [("--calib-tokens", self.calib_tokens), ("--max-tokens", self.max_tokens)] {
            if !(2..=1 << 28).contains(&n) {
                return bad(format!("{flag} must be in 2..={}, got {n}", 1u64 << 28));
            }
        }
        for (flag, n, max) in [
            ("--frontier-points", self.frontier_points, 64),
            ("--baselines", self.baselines, 100),
            ("--bench-reps", self.bench_reps, 100),
        ] {
            if n > max {
                return bad(format!("{flag} must be at most {max}, got {n}"));
            }
        }
        if let Some(us) = self.max_decode_us.filter(|us| !(us.is_finite() && *us > 0.0 && *us < 1e12)) {
            return bad(format!(
                "--min-decode-tps / --max-decode-ms must be a positive speed, got {us:.3e} µs per token"
            ));
        }
        if !(0.0..0.5).contains(&self.speed_margin) {
            return bad(format!("--speed-margin must be a percentage in 0..50, got {}", 100.0 * self.speed_margin));
        }
        if self.merge && self.shard.is_some() {
            return bad("--merge finishes a sharded run: run it without --shard".into());
        }
        if synthetic_model && !(synthetic::is_synthetic(&self.calib) && synthetic::is_synthetic(&self.text)) {
            return bad(
                "synthetic models have random weights: pass --calib synthetic --text synthetic (timings only)".into()
            );
        }
        Ok(())
    }
}
