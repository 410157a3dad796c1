//! `minilab sensitivity`: flags and config → [`Settings`], then the library's pipeline
//! (`sensitivity::pipeline::run`) and a console summary.

use super::interrupt::{self, SignalControl};
use super::Setup;
use crate::cmd::args::ModelArgs;
use crate::error::{Error, Result};
use crate::quant::Precision;
use crate::sensitivity::pipeline::{self, Outcome};
use crate::sensitivity::settings::Settings;
use crate::sensitivity::shard::{self, Shard};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// `minilab sensitivity` flags.
#[derive(Debug, Args, Clone)]
pub struct SensitivityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Memory budget for resident weights (embeddings, norms and LM head included), in GB (10⁹ bytes).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub budget_gb: Option<f64>,
    /// Formats to scan and allocate besides f16, comma-separated. Default: int8,nf4.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub formats: Option<Vec<String>>,
    /// Sensitivity metric: kld (mean KL divergence vs f16) or ppl (perplexity increase). Default: kld.
    #[arg(long, value_name = "M")]
    pub metric: Option<String>,
    /// Allocation: greedy (best score reduction per byte) or optimal (exact knapsack). Default: greedy.
    #[arg(long, value_name = "S")]
    pub strategy: Option<String>,
    /// Calibration text for the scan, or `synthetic` (a seeded token stream, for timing synthetic
    /// models). Default: eval-data/calib.txt.
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
    /// Calibration tokens scanned. Default: 4096.
    #[arg(long, value_name = "N")]
    pub calib_tokens: Option<usize>,
    /// Held-out text for validation and the frontier, or `synthetic`. Default: eval-data/heldout.txt.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Held-out tokens evaluated per configuration. Default: 8192.
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Window length in tokens. Default: 512.
    #[arg(long, value_name = "N")]
    pub ctx: Option<usize>,
    /// Budgets in the frontier sweep between all-cheapest and all-f16. Default: 8.
    #[arg(long, value_name = "N")]
    pub frontier_points: Option<usize>,
    /// Random plans of the chosen plan's size measured as a baseline. Default: 5.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub baselines: usize,
    /// Timed repetitions (after a warm-up) of pp512/tg128 at each frontier point. Default: 2.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub bench_reps: usize,
    /// Skip the speed measurements of the frontier (and the decode-time model, unless a speed
    /// limit needs it).
    #[arg(long)]
    pub no_speed: bool,
    /// Speed limit: the plan must decode at least X tokens/s (batch 1, predicted by a decode-time
    /// model measured on this device), as well as fit --budget-gb.
    #[arg(long, value_name = "X", conflicts_with = "max_decode_ms", allow_negative_numbers = true)]
    pub min_decode_tps: Option<f64>,
    /// Speed limit as time: at most X ms per decoded token (predicted).
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    pub max_decode_ms: Option<f64>,
    /// Percent of the speed limit held back for the time model's error: the plan is made for a
    /// limit that much tighter. Default: 3 (the predictions' median error on the H200 was 1–3 %).
    #[arg(long, value_name = "PCT", allow_negative_numbers = true)]
    pub speed_margin: Option<f64>,
    /// Reference log-probs kept per position for KLD. Default: 64.
    #[arg(long, value_name = "K", default_value_t = 64)]
    pub kld_topk: usize,
    /// Output folder. Default: runs/MODEL-TIMESTAMP.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in --out (same model and settings), skipping finished layers.
    #[arg(long)]
    pub resume: bool,
    /// Scan only shard I of N (0 ≤ I < N) into scan.shard-I-of-N.jsonl in --out, then stop; run
    /// each shard as its own process (one per GPU or machine, sharing --out), then --merge.
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    pub shard: Option<Shard>,
    /// Finish a sharded run: check that every shard journal in --out is complete and agrees with
    /// these settings, merge them into scan.jsonl, then allocate, validate and draw the frontier.
    #[arg(long)]
    pub merge: bool,
}

fn settings(args: &SensitivityArgs, setup: &Setup) -> Result<Settings> {
    let c = &setup.config.sensitivity;
    let gb = args.budget_gb.or(c.budget_gb).ok_or_else(|| Error::input("--budget-gb is required"))?;
    if !(gb.is_finite() && gb > 0.0 && gb < 1e6) {
        return Err(Error::input(format!("--budget-gb must be a positive number of GB (10⁹ bytes), got {gb}")));
    }
    if (args.shard.is_some() || args.merge) && args.out.is_none() && c.out.is_none() {
        return Err(Error::input("--shard and --merge need --out: the folder every shard of the run shares"));
    }
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    let out = args
        .out
        .clone()
        .or(c.out.clone())
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{stamp}", setup.spec.short_name())));
    let mut s = Settings::new((gb * 1e9).round() as u64, out);
    if let Some(names) = args.formats.clone().or(c.formats.clone()) {
        s.formats.clear();
        for n in &names {
            let p: Precision = n.parse().map_err(|e| Error::input(format!("--formats: {e}")))?;
            if !s.formats.contains(&p) {
                s.formats.push(p);
            }
        }
    }
    if let Some(m) = args.metric.clone().or(c.metric.clone()) {
        s.metric = m.parse().map_err(|e: String| Error::input(format!("--metric: {e}")))?;
    }
    if let Some(st) = args.strategy.clone().or(c.strategy.clone()) {
        s.strategy = st.parse().map_err(|e: String| Error::input(format!("--strategy: {e}")))?;
    }
    s.calib = args.calib.clone().or(c.calib.clone()).unwrap_or(s.calib);
    s.calib_tokens = args.calib_tokens.or(c.calib_tokens).unwrap_or(s.calib_tokens);
    s.text = args.text.clone().or(c.text.clone()).unwrap_or(s.text);
    s.max_tokens = args.max_tokens.or(c.max_tokens).unwrap_or(s.max_tokens);
    s.ctx = args.ctx.unwrap_or(s.ctx);
    s.frontier_points = args.frontier_points.or(c.frontier_points).unwrap_or(s.frontier_points);
    s.baselines = args.baselines;
    s.bench_reps = if args.no_speed { 0 } else { args.bench_reps.max(1) };
    s.kld_topk = args.kld_topk;
    s.resume = args.resume;
    s.shard = args.shard;
    s.merge = args.merge;
    s.exact_timing = tracing::enabled!(tracing::Level::INFO);
    s.max_decode_us = match (args.min_decode_tps.or(c.min_decode_tps), args.max_decode_ms.or(c.max_decode_ms)) {
        (Some(tps), _) if !(tps.is_finite() && tps > 0.0) => {
            return Err(Error::input(format!("--min-decode-tps must be a positive number of tokens/s, got {tps}")))
        }
        (_, Some(ms)) if !(ms.is_finite() && ms > 0.0) => {
            return Err(Error::input(format!("--max-decode-ms must be a positive number of ms, got {ms}")))
        }
        (Some(_), Some(_)) => return Err(Error::input("give --min-decode-tps or --max-decode-ms, not both")),
        (Some(tps), None) => Some(1e6 / tps),
        (None, Some(ms)) => Some(ms * 1e3),
        (None, None) => None,
    };
    if let Some(pct) = args.speed_margin {
        s.speed_margin = pct / 100.0;
    }
    Ok(s)
}

/// Runs `minilab sensitivity`.
pub fn run(args: &SensitivityArgs) -> Result<()> {
    let started = Instant::now();
    let mut setup = Setup::new(&args.model)?;
    // Scanning in bf16 on a GPU ranks layers by rounding noise as much as by their format: on the
    // demo model the bf16 scan's plan has 2.7× the held-out KLD of the f32 scan's (BENCHMARKS.md,
    // issue 10), so the scan computes in f32 unless --dtype asks otherwise.
    if args.model.dtype.is_none() && setup.config.dtype.is_none() {
        setup.dtype = candle_core::DType::F32;
    }
    let s = settings(args, &setup)?;
    // Texts are checked before the (slower) model load, and each is read once.
    let texts = pipeline::open_texts(&s)?;
    let mut loaded = setup.load(false)?;
    interrupt::install(&s.out, &shard::journal_name(s.shard));
    match pipeline::run_with_texts(&mut loaded, &s, texts, &SignalControl, started)? {
        Outcome::Finished(summary) => {
            crate::report::console::print(&format!("{}\n", crate::report::run::console_summary(&summary)))?
        }
        Outcome::Shard { shard, items, phases_s } => {
            let secs = |k: &str| phases_s.get(k).copied().unwrap_or(0.0);
            crate::report::console::print(&format!(
                "shard {shard}: {items} items in {} ({:.1} s scan, {:.1} s baseline); when every shard is done, \
                 run the same command with --merge instead of --shard\n",
                s.out.join(shard::journal_name(Some(shard))).display(),
                secs("scan"),
                secs("baseline")
            ))?;
        }
        Outcome::Stopped => return Err(Error::Runtime(interrupt::message(&s.out, &shard::journal_name(s.shard)))),
    }
    Ok(())
}
