//! `minilab bench`: ppN / tgN speed, weight and measured memory, roofline, results log.

use super::{apply_plan, describe, Setup};
use crate::bench::suite::{self, Lengths};
use crate::bench::{self, memory, roofline, table, BenchRecord};
use crate::cmd::args::{ModelArgs, PlanArgs};
use crate::config::DEFAULT_TEXT;
use crate::error::Result;
use clap::Args;
use std::path::PathBuf;

/// `minilab bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Prompt lengths for ppN tests, comma-separated (0 skips prefill). Default: 512.
    #[arg(short = 'p', long = "n-prompt", value_delimiter = ',', value_name = "N")]
    pub n_prompt: Option<Vec<usize>>,
    /// Decode steps for tgN tests, comma-separated (0 skips decode). Default: 128.
    #[arg(short = 'n', long = "n-gen", value_delimiter = ',', value_name = "N")]
    pub n_gen: Option<Vec<usize>>,
    /// Tokens already in the KV cache before the decode steps (llama-bench's -d). Default: 0.
    #[arg(short = 'd', long, value_name = "N")]
    pub depth: Option<usize>,
    /// Timed repetitions after one warm-up. Default: 5.
    #[arg(short = 'r', long, value_name = "N")]
    pub reps: Option<usize>,
    /// Output format on stdout: md, csv or json.
    #[arg(short = 'o', long, default_value = "md", value_parser = ["md", "csv", "json"])]
    pub output: String,
    /// Skip measuring the device's copy bandwidth and matmul peak (no roofline percentages).
    #[arg(long)]
    pub no_roofline: bool,
    /// CSV log that every run appends to. Default: results/benchmark_log.csv.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Do not append to the results log.
    #[arg(long)]
    pub no_log: bool,
    /// Decode eagerly on CUDA instead of replaying the step as a CUDA graph (also
    /// MINILAB_CUDA_GRAPH=off), to compare the two.
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// Text whose tokens feed the prompts. Default: eval-data/heldout.txt (synthetic models use
    /// seeded pseudo-random ids).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
}

fn lengths(args: &BenchArgs, setup: &Setup) -> Result<Lengths> {
    let c = &setup.config.bench;
    let prompts = args.n_prompt.clone().or(c.prompt.clone()).unwrap_or(vec![512]);
    let gens = args.n_gen.clone().or(c.gen.clone()).unwrap_or(vec![128]);
    Lengths::new(prompts, gens, args.depth.or(c.depth).unwrap_or(0), args.reps.or(c.reps).unwrap_or(5))
}

/// Runs `minilab bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let setup = Setup::new(&args.model)?;
    let len = lengths(args, &setup)?;
    if args.no_cuda_graph {
        crate::model::graph::set_enabled(false);
    }
    let (plan, plan_name) = setup.plan(&args.plan)?;
    let text = args.text.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_TEXT));
    let before = memory::read(&setup.device);
    let mut loaded = setup.load(false)?;
    let longest = len.longest(loaded.model.config().max_position_embeddings)?;
    let assignment = apply_plan(&mut loaded.model, &plan, &plan_name)?;
    loaded.model.drop_masters();
    // Opened before the timing, so an unwritable log fails now, not after it; after the checks and
    // the load, so a refused run leaves no empty log behind.
    let log = if args.no_log { None } else { Some(bench::log::Log::open(&log_path(args, &setup))?) };
    let feed = suite::feed_tokens(&loaded, &text, longest.max(1))?;
    let model = &loaded.model;
    let (bandwidth, matmul_flops) = ceilings(args, &setup, &len, model.act_dtype());
    crate::device::sync(&setup.device)?;
    let after = memory::read(&setup.device);
    memory::reset_peak();
    let precision = if plan_name.ends_with(".yaml") || plan_name.ends_with(".yml") {
        format!("{plan_name} ({})", describe(&assignment))
    } else {
        plan_name.clone()
    };
    let base = BenchRecord {
        weight_bytes: model.weight_bytes(),
        device_bytes: after.used.saturating_sub(before.used),
        bandwidth,
        matmul_flops,
        precision,
        reps: len.reps,
        ..BenchRecord::empty(&setup.spec.short_name(), &setup.device, setup.dtype)
    };
    let pb = crate::progress::bar(len.total_runs() as u64, "bench");
    let mut records = suite::run(model, &feed, &len, &base, &pb)?;
    pb.finish_and_clear();
    let peak = memory::read(&setup.device).peak.max(after.used).saturating_sub(before.used);
    for r in &mut records {
        r.device_peak_bytes = peak;
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let output = args.output.parse()?;
    crate::report::console::print(&table::render(&records, output, model.config().n_params(), &now)?)?;
    if let Some(log) = log {
        log.append(&records, &now)?;
    }
    Ok(())
}

fn log_path(args: &BenchArgs, setup: &Setup) -> PathBuf {
    let configured = args.log.clone().or(setup.config.bench.log.clone());
    configured.unwrap_or_else(|| PathBuf::from("results/benchmark_log.csv"))
}

/// The device's copy bandwidth and matmul peak (0 where not measured).
///
/// Measured first: their buffers (half a GiB on the CPU, 4 GiB on a GPU) are freed before the
/// memory readings, so they count neither in the model's memory nor in the runs' peak. A ceiling
/// that cannot be measured (its buffers do not fit beside the model, say) costs its roofline
/// column, not the run.
fn ceilings(args: &BenchArgs, setup: &Setup, len: &Lengths, dtype: candle_core::DType) -> (f64, f64) {
    let ceiling = |what: &str, m: Result<f64>| {
        m.unwrap_or_else(|e| {
            tracing::warn!("{what} not measured, no roofline for it: {e}");
            0.0
        })
    };
    if args.no_roofline {
        return (0.0, 0.0);
    }
    let bandwidth = ceiling("copy bandwidth", roofline::measure_bandwidth(&setup.device));
    let matmul_flops = if len.prompts.is_empty() {
        0.0
    } else {
        ceiling("matmul peak", roofline::measure_matmul_peak(&setup.device, dtype))
    };
    (bandwidth, matmul_flops)
}
