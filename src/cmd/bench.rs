//! `minilab bench`: ppN / tgN speed, weight and measured memory, roofline, results log.

use super::{apply_plan, describe, Setup};
use crate::bench::{self, memory, roofline, BenchRecord};
use crate::cli::{ModelArgs, PlanArgs};
use crate::config::DEFAULT_TEXT;
use crate::error::{Error, Result};
use crate::outln;
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
    /// Skip measuring the device bandwidth (no roofline percentage).
    #[arg(long)]
    pub no_roofline: bool,
    /// CSV log that every run appends to. Default: results/benchmark_log.csv.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Do not append to the results log.
    #[arg(long)]
    pub no_log: bool,
    /// Text whose tokens feed the prompts. Default: eval-data/heldout.txt (synthetic models use
    /// seeded pseudo-random ids).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
}

/// Far more repetitions than any timing needs; the sample buffer is sized from it.
const MAX_REPS: usize = 100_000;

struct Lengths {
    prompts: Vec<usize>,
    gens: Vec<usize>,
    depth: usize,
    reps: usize,
}

fn lengths(args: &BenchArgs, setup: &Setup) -> Result<Lengths> {
    let c = &setup.config.bench;
    let prompts = args.n_prompt.clone().or(c.prompt.clone()).unwrap_or(vec![512]);
    let gens = args.n_gen.clone().or(c.gen.clone()).unwrap_or(vec![128]);
    let depth = args.depth.or(c.depth).unwrap_or(0);
    let reps = args.reps.or(c.reps).unwrap_or(5);
    if reps == 0 || reps > MAX_REPS {
        return Err(Error::input(format!("-r/--reps must be between 1 and {MAX_REPS} (got {reps})")));
    }
    // llama-bench lets 0 skip a kind of test; a run with nothing to time is a mistake.
    if prompts.iter().chain(&gens).all(|&n| n == 0) {
        return Err(Error::input("nothing to run: -p and -n are both 0"));
    }
    if args.n_prompt.as_ref().is_some_and(|p| p.contains(&0) && p.len() > 1)
        || args.n_gen.as_ref().is_some_and(|g| g.contains(&0) && g.len() > 1)
    {
        return Err(Error::input("0 in a list of lengths: use -p 0 or -n 0 alone to skip that test"));
    }
    Ok(Lengths {
        prompts: prompts.into_iter().filter(|&n| n > 0).collect(),
        gens: gens.into_iter().filter(|&n| n > 0).collect(),
        depth,
        reps,
    })
}

/// The longest sequence the tests need, checked against the model's context `ctx` (sums of
/// user-given lengths are checked, never wrapped: `-d 18446744073709551615` is an input error).
fn check_context(len: &Lengths, ctx: usize) -> Result<usize> {
    let prompt = len.prompts.iter().copied().max().unwrap_or(0);
    if prompt > ctx {
        return Err(Error::input(format!("-p {prompt} exceeds the model's context of {ctx} tokens")));
    }
    let gen = len.gens.iter().copied().max().unwrap_or(0);
    match len.depth.checked_add(gen) {
        Some(n) if n <= ctx => Ok(prompt.max(n)),
        _ => Err(Error::input(format!("-d {} plus -n {gen} exceeds the model's context of {ctx} tokens", len.depth))),
    }
}

/// Token ids to feed: the eval text's when the model has a tokenizer, else seeded pseudo-random.
fn feed_tokens(loaded: &crate::model::Loaded, text: &std::path::Path, n: usize) -> Result<Vec<u32>> {
    let vocab = loaded.model.config().vocab_size as u64;
    let mut ids = match &loaded.tokenizer {
        // Only as much of the text as the longest test needs is read and tokenized.
        Some(tok) => crate::eval::text::tokenize_file(tok, text, Some(n))?,
        None => {
            (0..n as u64).map(|i| (1 + (i.wrapping_mul(0x9E37_79B9) ^ (i >> 3)) % (vocab - 1).max(1)) as u32).collect()
        }
    };
    while ids.len() < n {
        ids.extend_from_within(..ids.len().min(n - ids.len()));
    }
    ids.truncate(n);
    Ok(ids)
}

/// Runs `minilab bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    let setup = Setup::new(&args.model)?;
    let len = lengths(args, &setup)?;
    let (plan, plan_name) = setup.plan(&args.plan)?;
    let text = args.text.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_TEXT));
    let before = memory::read(&setup.device);
    let mut loaded = setup.load(false)?;
    let longest = check_context(&len, loaded.model.config().max_position_embeddings)?;
    let assignment = apply_plan(&mut loaded.model, &plan, &plan_name)?;
    loaded.model.drop_masters();
    // Opened before the timing, so an unwritable log fails now, not after it; after the checks and
    // the load, so a refused run leaves no empty log behind.
    let log = if args.no_log {
        None
    } else {
        let path = args
            .log
            .clone()
            .or(setup.config.bench.log.clone())
            .unwrap_or_else(|| PathBuf::from("results/benchmark_log.csv"));
        Some(bench::log::Log::open(&path)?)
    };
    let feed = feed_tokens(&loaded, &text, longest.max(1))?;
    crate::device::sync(&setup.device)?;
    let after = memory::read(&setup.device);
    memory::reset_peak();
    let model = &loaded.model;
    let bandwidth = if args.no_roofline { 0.0 } else { roofline::measure_bandwidth(&setup.device)? };
    let precision = if plan_name.ends_with(".yaml") || plan_name.ends_with(".yml") {
        format!("{plan_name} ({})", describe(&assignment))
    } else {
        plan_name.clone()
    };
    // What decode really reads: the encoded tensors in their stored dtype (f32 compute reads 4 bytes
    // per 16-bit weight), not the plan's nominal bytes.
    let linear_bytes = model.resident_bytes();
    let base = BenchRecord {
        model: setup.spec.short_name(),
        test: String::new(),
        n_prompt: 0,
        n_gen: 0,
        depth: 0,
        avg_ts: 0.0,
        stddev_ts: 0.0,
        samples_ns: vec![],
        ttft_ms: None,
        weight_bytes: model.weight_bytes(),
        device_bytes: after.used.saturating_sub(before.used),
        device_peak_bytes: 0,
        bandwidth,
        roofline_pct: None,
        precision,
        device: crate::device::device_name(&setup.device),
        dtype: format!("{:?}", setup.dtype).to_lowercase(),
        threads: candle_core::utils::get_num_threads(),
        reps: len.reps,
    };
    let total = (len.prompts.len() + len.gens.len()).saturating_mul(len.reps);
    let pb = crate::progress::bar(total as u64, "bench");
    let mut records = Vec::new();
    for &n in &len.prompts {
        let samples = bench::time_prefill(model, &feed[..n], len.reps, &pb)?;
        let (avg, sd) = bench::tokens_per_s(n, &samples);
        let ttft = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1e6;
        records.push(BenchRecord {
            test: format!("pp{n}"),
            n_prompt: n,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ns: samples,
            ttft_ms: Some(ttft),
            ..base.clone()
        });
    }
    for &n in &len.gens {
        let samples = bench::time_decode(model, &feed[..len.depth], &feed[len.depth..len.depth + n], len.reps, &pb)?;
        let (avg, sd) = bench::tokens_per_s(n, &samples);
        // mean depth over the run: the cache grows from `depth` to `depth + n`
        let per_token = roofline::bytes_per_token(linear_bytes, bench::kv_bytes_per_token(model), len.depth + n / 2);
        let roof = (bandwidth > 0.0).then(|| roofline::roofline_pct(avg, bandwidth, per_token));
        let test = if len.depth > 0 { format!("tg{n}@d{}", len.depth) } else { format!("tg{n}") };
        records.push(BenchRecord {
            test,
            n_gen: n,
            depth: len.depth,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ns: samples,
            roofline_pct: roof,
            ..base.clone()
        });
    }
    pb.finish_and_clear();
    let peak = memory::read(&setup.device).peak.max(after.used).saturating_sub(before.used);
    for r in &mut records {
        r.device_peak_bytes = peak;
    }
    print_records(&records, &args.output, model)?;
    if let Some(log) = log {
        log.append(&records, &chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))?;
    }
    Ok(())
}

fn print_records(records: &[BenchRecord], output: &str, model: &crate::model::Model) -> Result<()> {
    let mut out = String::new();
    match output {
        "json" => outln!(out, "{}", serde_json::to_string_pretty(records).map_err(|e| Error::Runtime(e.to_string()))?),
        "csv" => {
            outln!(out, "{}", bench::log::HEADER);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            for r in records {
                outln!(out, "{}", bench::log::line(r, &now));
            }
        }
        _ => {
            let Some(r0) = records.first() else { return Ok(()) };
            let gb = |b: u64| format!("{:.3} GB", b as f64 / 1e9);
            outln!(
                out,
                "| model | weights | params | precision | device | dtype | threads | test | t/s | ttft ms | roofline |"
            );
            outln!(out, "| --- | ---: | ---: | --- | --- | --- | ---: | --- | ---: | ---: | ---: |");
            let params = format!("{:.2} B", model.config().n_params() as f64 / 1e9);
            for r in records {
                let ttft = r.ttft_ms.map(|t| format!("{t:.1}")).unwrap_or_default();
                let roof = r.roofline_pct.map(|p| format!("{p:.1} %")).unwrap_or_default();
                outln!(
                    out,
                    "| {} | {} | {params} | {} | {} | {} | {} | {} | {:.2} ± {:.2} | {ttft} | {roof} |",
                    r.model,
                    gb(r.weight_bytes),
                    r.precision,
                    r.device,
                    r.dtype,
                    r.threads,
                    r.test,
                    r.avg_ts,
                    r.stddev_ts
                );
            }
            outln!(out);
            outln!(
                out,
                "weights (computed from the plan): {}   device memory (measured{}): {} after load, {} peak",
                gb(r0.weight_bytes),
                if r0.device == "cpu" { ", RSS growth" } else { ", free-memory delta" },
                gb(r0.device_bytes),
                gb(r0.device_peak_bytes)
            );
            if r0.bandwidth > 0.0 {
                outln!(out, "measured copy bandwidth: {:.1} GB/s (read + write); roofline = decode t/s × bytes read per token ÷ bandwidth", r0.bandwidth / 1e9);
            }
        }
    }
    crate::report::console::print(&out)
}
