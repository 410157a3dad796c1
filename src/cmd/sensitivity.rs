//! `minilab sensitivity`: scan → allocate → validate → frontier → report (DESIGN.md §3–§4).

use super::Setup;
use crate::cli::ModelArgs;
use crate::config::{DEFAULT_CALIB, DEFAULT_TEXT};
use crate::error::{Error, Result};
use crate::eval::text;
use crate::model::Model;
use crate::quant::Precision;
use crate::sensitivity::allocate::{self, AllocError, LayerOptions};
use crate::sensitivity::journal::{Header, Journal};
use crate::sensitivity::lock::{self, OutLock};
use crate::sensitivity::scan::{self, Metric, ScanItem};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// Calibration text for the scan. Default: eval-data/calib.txt.
    #[arg(long, value_name = "FILE")]
    pub calib: Option<PathBuf>,
    /// Calibration tokens scanned. Default: 4096.
    #[arg(long, value_name = "N")]
    pub calib_tokens: Option<usize>,
    /// Held-out text for validation and the frontier. Default: eval-data/heldout.txt.
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
    /// Skip the speed measurements of the frontier.
    #[arg(long)]
    pub no_speed: bool,
    /// Reference log-probs kept per position for KLD. Default: 64.
    #[arg(long, value_name = "K", default_value_t = 64)]
    pub kld_topk: usize,
    /// Output folder. Default: runs/<model>-<timestamp>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted run in --out (same model and settings), skipping finished layers.
    #[arg(long)]
    pub resume: bool,
}

/// Settings resolved from flags, config and defaults.
struct Settings {
    budget: u64,
    formats: Vec<Precision>,
    metric: Metric,
    strategy: String,
    calib: PathBuf,
    calib_tokens: usize,
    text: PathBuf,
    max_tokens: usize,
    ctx: usize,
    points: usize,
    out: PathBuf,
}

fn settings(args: &SensitivityArgs, setup: &Setup) -> Result<Settings> {
    let c = &setup.config.sensitivity;
    let gb = args.budget_gb.or(c.budget_gb).ok_or_else(|| Error::input("--budget-gb is required"))?;
    if !(gb.is_finite() && gb > 0.0) {
        return Err(Error::input(format!("--budget-gb must be a positive number of GB (10⁹ bytes), got {gb}")));
    }
    let names = args.formats.clone().or(c.formats.clone()).unwrap_or_else(|| vec!["int8".into(), "nf4".into()]);
    let mut formats = Vec::new();
    for n in &names {
        let p: Precision = n.parse().map_err(|e| Error::input(format!("--formats: {e}")))?;
        if p == Precision::F16 {
            return Err(Error::input("--formats lists the formats to squeeze into; f16 is always a choice"));
        }
        if !formats.contains(&p) {
            formats.push(p);
        }
    }
    let metric: Metric = args
        .metric
        .clone()
        .or(c.metric.clone())
        .unwrap_or_else(|| "kld".into())
        .parse()
        .map_err(|e: String| Error::input(format!("--metric: {e}")))?;
    let strategy = args.strategy.clone().or(c.strategy.clone()).unwrap_or_else(|| "greedy".into());
    if !matches!(strategy.as_str(), "greedy" | "optimal") {
        return Err(Error::input(format!("--strategy: unknown strategy `{strategy}` (expected greedy or optimal)")));
    }
    let ctx = args.ctx.unwrap_or(512);
    if ctx < 2 {
        return Err(Error::input("--ctx must be at least 2"));
    }
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S");
    Ok(Settings {
        budget: (gb * 1e9).round() as u64,
        formats,
        metric,
        strategy,
        calib: args.calib.clone().or(c.calib.clone()).unwrap_or_else(|| DEFAULT_CALIB.into()),
        calib_tokens: args.calib_tokens.or(c.calib_tokens).unwrap_or(4096),
        text: args.text.clone().or(c.text.clone()).unwrap_or_else(|| DEFAULT_TEXT.into()),
        max_tokens: args.max_tokens.or(c.max_tokens).unwrap_or(8192),
        ctx,
        points: args.frontier_points.or(c.frontier_points).unwrap_or(8),
        out: args
            .out
            .clone()
            .or(c.out.clone())
            .unwrap_or_else(|| PathBuf::from(format!("runs/{}-{stamp}", setup.spec.short_name()))),
    })
}

/// Every layer's sizes with placeholder scores: enough to check a budget before any scan.
fn size_options(model: &Model, formats: &[Precision]) -> Vec<LayerOptions> {
    model
        .layer_ids()
        .into_iter()
        .map(|id| {
            let (o, i) = model.linear(id).map_or((0, 0), |l| l.shape());
            let choices = std::iter::once(Precision::F16)
                .chain(formats.iter().copied())
                .map(|p| allocate::Choice { precision: p, bytes: p.weight_bytes(o, i), score: 0.0 })
                .collect();
            LayerOptions { id: id.to_string(), choices }
        })
        .collect()
}

fn alloc_err(e: AllocError) -> Error {
    Error::input(format!("--budget-gb: {e}"))
}

/// Runs `minilab sensitivity`.
pub fn run(args: &SensitivityArgs) -> Result<()> {
    let mut phases: BTreeMap<String, f64> = BTreeMap::new();
    let t0 = Instant::now();
    let setup = Setup::new(&args.model)?;
    let s = settings(args, &setup)?;
    text::read_text(&s.calib)?;
    text::read_text(&s.text)?;
    let mut loaded = setup.load(true)?;
    let model_ctx = loaded.model.config().max_position_embeddings;
    if s.ctx > model_ctx {
        return Err(Error::input(format!("--ctx {} is larger than the model's context of {model_ctx} tokens", s.ctx)));
    }
    let fixed = loaded.model.fixed_bytes();
    let sizes = size_options(&loaded.model, &s.formats);
    // Fail on an impossible budget before spending minutes on a scan.
    allocate::greedy(&sizes, fixed, s.budget).map_err(alloc_err)?;
    let tok = loaded.tokenizer.clone().ok_or_else(|| Error::input("the model has no tokenizer"))?;
    let calib = text::windows(&text::tokenize_file(&tok, &s.calib, Some(s.calib_tokens))?, s.ctx);
    let held = text::windows(&text::tokenize_file(&tok, &s.text, Some(s.max_tokens))?, s.ctx);
    // Until here Ctrl-C simply ends the process: nothing has been written.
    interrupt::install(&s.out);
    // Held until this function returns, on every path.
    let _lock = prepare_out(&s.out)?;
    let header = Header::new(serde_json::json!({
        "model": setup.spec.short_name(), "config": loaded.model.config(), "dtype": format!("{:?}", setup.dtype),
        "formats": s.formats, "metric": s.metric, "calib": s.calib.display().to_string(), "calib_tokens": s.calib_tokens,
        "ctx": s.ctx, "kld_topk": args.kld_topk,
    }));
    let (journal, done) = Journal::open(&s.out.join("scan.jsonl"), &header, args.resume)?;
    phases.insert("load".into(), t0.elapsed().as_secs_f64());
    eprintln!(
        "minilab sensitivity → {} (Ctrl-C stops after the layer in progress; continue with --resume --out {})",
        s.out.display(),
        s.out.display()
    );

    let items = run_scan(&mut loaded.model, &s, calib, &journal, done, args.kld_topk, &mut phases)?;
    let ctx = super::sensitivity_finish::Context {
        setup: &setup,
        header: &header,
        args,
        budget: s.budget,
        formats: &s.formats,
        strategy: &s.strategy,
        points: s.points,
        out: &s.out,
        held,
        items,
    };
    super::sensitivity_finish::finish(&mut loaded.model, ctx, phases)
}

/// Creates the output folder and takes its lock; a path that cannot be a writable folder is a
/// one-line error before anything is written.
fn prepare_out(out: &Path) -> Result<OutLock> {
    if out.exists() && !out.is_dir() {
        return Err(Error::input(format!("--out {} is a file, not a folder", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| lock::out_dir_error("cannot create the output folder", out, e))?;
    let held = OutLock::acquire(out)?;
    lock::remove_stale_temps(out);
    Ok(held)
}

fn run_scan(
    model: &mut Model,
    s: &Settings,
    calib: Vec<Vec<u32>>,
    journal: &Journal,
    done: Vec<ScanItem>,
    k: usize,
    phases: &mut BTreeMap<String, f64>,
) -> Result<Vec<ScanItem>> {
    let todo: Vec<_> = model
        .layer_ids()
        .into_iter()
        .flat_map(|id| s.formats.iter().map(move |f| (id, *f)))
        .filter(|(id, f)| !done.iter().any(|d| d.layer == id.to_string() && d.format == *f))
        .collect();
    let mut items = done;
    if todo.is_empty() {
        return Ok(items);
    }
    let t = Instant::now();
    let base = scan::baseline(model, calib, k)?;
    phases.insert("baseline".into(), t.elapsed().as_secs_f64());
    let t = Instant::now();
    let pb = crate::progress::bar(todo.len() as u64, "scan");
    // Ctrl-C from here on lets the item in progress finish and reach the journal.
    let scanning = interrupt::Scanning::enter();
    for (id, f) in todo {
        if interrupt::requested() {
            break;
        }
        pb.set_message(format!("{id} {f}"));
        let item = scan::measure(model, &base, id, f, s.metric)?;
        journal.append(&item)?;
        tracing::info!("{} {}: score {:.6}", item.layer, item.format, item.score);
        items.push(item);
        pb.inc(1);
    }
    pb.finish_and_clear();
    drop(scanning);
    if interrupt::requested() {
        return Err(Error::Runtime(interrupt::message(&s.out)));
    }
    phases.insert("scan".into(), t.elapsed().as_secs_f64());
    Ok(items)
}

/// Where the outputs of a run go.
pub fn out_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Ctrl-C (SIGINT) handling. During the scan loop the first Ctrl-C asks the loop to stop after the
/// item in progress is journaled; anywhere else, or a second time, the process stops at once
/// (everything finished is already on disk: the journal is synced per item, other files are
/// written atomically). Either way the lock is released, one line says how to resume, and the
/// exit code is 130.
pub mod interrupt {
    use std::path::Path;
    use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

    const IDLE: u8 = 0;
    const SCANNING: u8 = 1;
    const STOP: u8 = 2;
    static STATE: AtomicU8 = AtomicU8::new(IDLE);

    /// The line printed when a run stops early.
    pub fn message(out: &Path) -> String {
        format!(
            "interrupted: finished layers are saved in {}; continue with the same command plus --resume --out {}",
            out.join("scan.jsonl").display(),
            out.display()
        )
    }

    /// Installs the handler (once per process; later calls keep the first).
    pub(super) fn install(out: &Path) {
        let line = message(out);
        let r = ctrlc::set_handler(move || {
            if STATE.compare_exchange(SCANNING, STOP, SeqCst, SeqCst).is_ok() {
                eprintln!("\nCtrl-C: stopping after the layer in progress (Ctrl-C again to stop at once)");
                return;
            }
            crate::sensitivity::lock::release_held();
            eprintln!("\n{line}");
            std::process::exit(130);
        });
        if let Err(e) = r {
            tracing::debug!("Ctrl-C handler not installed: {e}");
        }
    }

    /// While alive, a first Ctrl-C only asks the scan loop to stop; dropping it ends that (a stop
    /// already asked for stays visible through [`requested`]).
    pub(super) struct Scanning(());

    impl Scanning {
        pub(super) fn enter() -> Self {
            let _ = STATE.compare_exchange(IDLE, SCANNING, SeqCst, SeqCst);
            Self(())
        }
    }

    impl Drop for Scanning {
        fn drop(&mut self) {
            let _ = STATE.compare_exchange(SCANNING, IDLE, SeqCst, SeqCst);
        }
    }

    /// Whether Ctrl-C asked the scan to stop: `main` exits with 130 then.
    pub fn requested() -> bool {
        STATE.load(SeqCst) == STOP
    }
}
