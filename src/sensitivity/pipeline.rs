//! One sensitivity run end to end: check the settings, scan (or one shard of the scan, or merge
//! the shards), then allocate, validate, measure baselines and the frontier, and write the run
//! folder. `minilab sensitivity` is a thin layer over [`run`].

use super::allocate::{self, LayerOptions};
use super::finish::{self, Finish};
use super::journal::{Header, Journal};
use super::lock::{self, OutLock};
use super::scan::{self, Placement, ScanItem};
use super::settings::Settings;
use super::shard::{self, Shard};
use super::summary::Summary;
use super::timing::StepTimes;
use crate::error::{Error, Result};
use crate::eval::{synthetic, text};
use crate::model::{LayerId, Loaded, Model};
use crate::quant::{HostEncoded, Precision};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the caller tells a running pipeline: whether to stop (checked between scan items), and
/// when the scan loop starts and ends (a signal handler stops gracefully only inside it).
pub trait Control {
    /// Whether the caller asked the scan to stop after the item in progress.
    fn stop_requested(&self) -> bool {
        false
    }
    /// Called with `true` when the scan loop starts and `false` when it ends.
    fn scanning(&self, _on: bool) {}
}

/// A run nobody interrupts.
pub struct Unattended;

impl Control for Unattended {}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// A shard finished its slice of the scan; `--merge` finishes the run.
    Shard { shard: Shard, items: usize, phases_s: BTreeMap<String, f64> },
    /// The whole run, with every output file written.
    Finished(Box<Summary>),
    /// The caller asked to stop; finished items are in the journal.
    Stopped,
}

/// Runs a sensitivity analysis of `loaded` with `s`; `started` is when the caller began (the
/// model load included), for the load phase.
pub fn run(loaded: &mut Loaded, s: &Settings, control: &dyn Control, started: Instant) -> Result<Outcome> {
    run_with_texts(loaded, s, open_texts(s)?, control, started)
}

/// The calibration and held-out texts of `s`, opened and checked (`None`: the synthetic stream).
/// A caller opens them before the model load so that a bad text fails fast; each is read once,
/// so pipes work.
pub fn open_texts(s: &Settings) -> Result<[Option<text::TextSource>; 2]> {
    let open = |p: &Path| (!synthetic::is_synthetic(p)).then(|| text::TextSource::open(p)).transpose();
    Ok([open(&s.calib)?, open(&s.text)?])
}

/// [`run`] with texts from [`open_texts`].
pub fn run_with_texts(
    loaded: &mut Loaded,
    s: &Settings,
    [calib, held]: [Option<text::TextSource>; 2],
    control: &dyn Control,
    started: Instant,
) -> Result<Outcome> {
    let synthetic = loaded.spec.is_synthetic() || s.synthetic_text();
    s.check(&loaded.model, loaded.spec.is_synthetic())?;
    if synthetic {
        crate::report::console::note(&format!("note: {}", synthetic::WARNING));
    }
    let calib = text::windows(&tokens(loaded, calib, &s.calib, s.calib_tokens, 1)?, s.ctx);
    let held = text::windows(&tokens(loaded, held, &s.text, s.max_tokens, 2)?, s.ctx);
    let model = &mut loaded.model;
    // Validation, baselines and the frontier apply each layer's formats again and again.
    model.cache_encodings();
    let sizes = size_options(model, &s.formats);
    // Fail on an impossible budget before spending minutes on a scan.
    allocate::greedy(&sizes, model.fixed_bytes(), s.budget_bytes).map_err(finish::alloc_err)?;
    let all = items(model, &s.formats);
    let placement = scan::placement(model, &calib)?;
    let _lock = prepare_out(&s.out, s.shard)?;
    let header = header(loaded, s, &calib)?;
    let model = &mut loaded.model;
    let mut phases = BTreeMap::from([("load".to_string(), started.elapsed().as_secs_f64())]);
    let mut times = ScanTimes { steps: StepTimes::new(s.exact_timing), peak_device_bytes: 0 };
    let items = if s.merge {
        let merged = shard::merge(&s.out, &header, model.config(), &all, s.ctx)?;
        write_journal(&s.out.join("scan.jsonl"), &header, &merged)?;
        merged
    } else {
        let scan = ScanCtx { s, calib: &calib, placement, control };
        match resume_scan(model, &scan, &header, &all, &mut phases, &mut times)? {
            Some(items) => items,
            None => return Ok(Outcome::Stopped),
        }
    };
    if let Some(shard) = s.shard {
        return Ok(Outcome::Shard { shard, items: items.len(), phases_s: phases });
    }
    let peak_device_bytes = times.peak_device_bytes;
    let ctx = Finish {
        settings: s,
        header: &header,
        model_name: loaded.spec.short_name(),
        synthetic,
        held,
        items,
        times: times.steps,
        placement,
        peak_device_bytes,
    };
    let summary = finish::finish(&mut loaded.model, ctx, phases)?;
    Ok(Outcome::Finished(Box::new(summary)))
}

/// The first `n` tokens of an opened text (`None`: the seeded synthetic stream).
fn tokens(loaded: &Loaded, source: Option<text::TextSource>, path: &Path, n: usize, seed: u64) -> Result<Vec<u32>> {
    let Some(source) = source else {
        return Ok(synthetic::tokens(loaded.model.config().vocab_size, n, seed));
    };
    let tok = loaded.tokenizer.as_ref().ok_or_else(|| {
        Error::input(format!("{}: the model has no tokenizer (use --calib synthetic --text synthetic)", path.display()))
    })?;
    let ids = source.tokens(tok, Some(n))?;
    text::check_tokens(&ids, path)?;
    Ok(ids)
}

/// Every (layer, format) item of a full scan, in model order.
fn items(model: &Model, formats: &[Precision]) -> Vec<(LayerId, Precision)> {
    model.layer_ids().into_iter().flat_map(|id| formats.iter().map(move |f| (id, *f))).collect()
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

/// The journal header: every setting that changes a scan result, and digests of the weights and
/// the calibration tokens (a resumed or merged run must score the same model on the same text).
fn header(loaded: &Loaded, s: &Settings, calib: &[Vec<u32>]) -> Result<Header> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for w in calib {
        for t in w {
            h.update(t.to_le_bytes());
        }
    }
    let digest: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    let model = &loaded.model;
    let t = Instant::now();
    let weights = model.weights_digest()?;
    tracing::info!("weights digest {weights} in {:.2} s", t.elapsed().as_secs_f64());
    Ok(Header::new(serde_json::json!({
        "model": loaded.spec.short_name(), "config": model.config(), "dtype": format!("{:?}", model.dtype()),
        "formats": s.formats, "metric": s.metric, "calib": s.calib.display().to_string(), "calib_tokens": s.calib_tokens,
        "ctx": s.ctx, "kld_topk": s.kld_topk, "calib_sha256": digest, "weights_sha256": weights,
    })))
}

/// Items of a journal that are not items of this run (a hand-edited or foreign journal).
fn check_known(done: &[ScanItem], all: &[(LayerId, Precision)]) -> Result<()> {
    match done.iter().find(|d| !all.iter().any(|(id, f)| d.layer == id.to_string() && d.format == *f)) {
        Some(d) => Err(Error::input(format!(
            "the journal holds {} {}, which is not an item of this run (no such layer or format); use another --out",
            d.layer, d.format
        ))),
        None => Ok(()),
    }
}

/// Writes a whole journal (header and items) atomically: the merged scan of a sharded run.
fn write_journal(path: &Path, header: &Header, items: &[ScanItem]) -> Result<()> {
    let json = |r: serde_json::Result<String>| r.map_err(|e| Error::Runtime(e.to_string()));
    let mut text = json(serde_json::to_string(header))? + "\n";
    for i in items {
        text += &(json(serde_json::to_string(i))? + "\n");
    }
    crate::report::write_atomic(path, text.as_bytes()).map_err(|e| Error::io(path, e))
}

/// Creates the output folder and takes its lock (a shard's own lock for a shard); a path that
/// cannot be a writable folder is a one-line error before anything is written.
fn prepare_out(out: &Path, shard: Option<Shard>) -> Result<OutLock> {
    if out.exists() && !out.is_dir() {
        return Err(Error::input(format!("--out {} is a file, not a folder", out.display())));
    }
    std::fs::create_dir_all(out).map_err(|e| lock::out_dir_error("cannot create the output folder", out, e))?;
    let held = match shard {
        Some(s) => OutLock::acquire_named(out, &format!(".lock.shard-{}-of-{}", s.index, s.count))?,
        None => OutLock::acquire(out)?,
    };
    lock::remove_stale_temps(out);
    Ok(held)
}

/// What a scan reads and answers to, fixed for the run.
struct ScanCtx<'a> {
    s: &'a Settings,
    calib: &'a [Vec<u32>],
    placement: Placement,
    control: &'a dyn Control,
}

/// Opens this run's (or this shard's) journal and scans the items it does not hold yet; `None`
/// when the caller asked to stop.
fn resume_scan(
    model: &mut Model,
    scan: &ScanCtx,
    header: &Header,
    all: &[(LayerId, Precision)],
    phases: &mut BTreeMap<String, f64>,
    times: &mut ScanTimes,
) -> Result<Option<Vec<ScanItem>>> {
    let s = scan.s;
    let mut header = header.clone();
    header.shard = s.shard;
    let (journal, done) = Journal::open(&s.out.join(shard::journal_name(s.shard)), &header, s.resume)?;
    check_known(&done, all)?;
    let todo: Vec<_> = shard::select(model.config(), all.to_vec(), s.ctx, s.shard)
        .into_iter()
        .filter(|(id, f)| !done.iter().any(|d| d.layer == id.to_string() && d.format == *f))
        .collect();
    crate::report::console::note(&format!(
        "minilab sensitivity{} → {}: {} items to scan, {} done (Ctrl-C stops after the item in progress; \
         continue with --resume --out {})",
        s.shard.map_or(String::new(), |sh| format!(" shard {sh}")),
        s.out.display(),
        todo.len(),
        done.len(),
        s.out.display()
    ));
    scan_items(model, scan, &journal, done, todo, phases, times)
}

/// Scans `todo` into the journal; `None` when the caller asked to stop.
fn scan_items(
    model: &mut Model,
    scan: &ScanCtx,
    journal: &Journal,
    done: Vec<ScanItem>,
    todo: Vec<(LayerId, Precision)>,
    phases: &mut BTreeMap<String, f64>,
    times: &mut ScanTimes,
) -> Result<Option<Vec<ScanItem>>> {
    let (s, control) = (scan.s, scan.control);
    let mut items = done;
    if todo.is_empty() {
        return Ok(Some(items));
    }
    let base = baseline(model, scan, phases, times)?;
    let t = Instant::now();
    let pb = crate::progress::bar(todo.len() as u64, "scan");
    let mut beat = Heartbeat::new(todo.len());
    // On a GPU the host encodes the next item while the device scores this one.
    let mut prefetch = Prefetch { on: !model.device().is_cpu(), next: None };
    control.scanning(true);
    for (n, &(id, f)) in todo.iter().enumerate() {
        if control.stop_requested() {
            break;
        }
        let item = prefetch.install(model, id, f).and_then(|()| {
            prefetch.start(model, todo.get(n + 1));
            pb.set_message(format!("{id} {f}"));
            let item = scan::measure(model, &base, id, f, s.metric, &mut times.steps);
            times.sample(model);
            item
        });
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                control.scanning(false);
                return Err(e);
            }
        };
        journal.append(&item)?;
        tracing::info!("{} {}: score {:.6} ({:.2} s)", item.layer, item.format, item.score, item.seconds);
        items.push(item);
        pb.inc(1);
        beat.tick(n + 1);
    }
    control.scanning(false);
    pb.finish_and_clear();
    if control.stop_requested() {
        return Ok(None);
    }
    phases.insert("scan".into(), t.elapsed().as_secs_f64());
    if s.exact_timing || tracing::enabled!(tracing::Level::INFO) {
        crate::report::console::note(&format!("scan steps ({} items):\n{}", todo.len(), times.steps.table()));
    }
    Ok(Some(items))
}

/// The all-f16 reference that every item is scored against, timed as the baseline phase.
fn baseline(
    model: &Model,
    scan: &ScanCtx,
    phases: &mut BTreeMap<String, f64>,
    times: &mut ScanTimes,
) -> Result<scan::Baseline> {
    let (calib, placement) = (scan.calib, scan.placement);
    let t = Instant::now();
    let base = scan::baseline(model, calib, scan.s.kld_topk, placement)?;
    phases.insert("baseline".into(), t.elapsed().as_secs_f64());
    times.sample(model);
    tracing::info!(
        "baseline: {} windows in {} batches of ≤{}, prefix cache {:.2} GB on the {}",
        calib.len(),
        base.batches.len(),
        placement.windows_per_batch,
        placement.prefix_bytes as f64 / 1e9,
        if placement.prefix_on_host || model.device().is_cpu() { "host" } else { "device" }
    );
    Ok(base)
}

/// The next item's weights, encoded on a host thread while the device scores this item.
struct Prefetch {
    on: bool,
    next: Option<std::thread::JoinHandle<candle_core::Result<Arc<HostEncoded>>>>,
}

impl Prefetch {
    /// Hands layer `id` the encoding started for it, if one was.
    fn install(&mut self, model: &mut Model, id: LayerId, f: Precision) -> Result<()> {
        if let Some(h) = self.next.take() {
            let enc = h.join().map_err(|_| Error::Runtime("the encoding thread panicked".into()))?;
            if let Some(l) = model.linear_mut(id) {
                l.insert_encoding(f, enc?);
            }
        }
        Ok(())
    }

    /// Starts encoding `item` (the next one to scan) when prefetching is on.
    fn start(&mut self, model: &Model, item: Option<&(LayerId, Precision)>) {
        if let Some(&(id, f)) = item.filter(|_| self.on) {
            let master = model.linear(id).and_then(|l| l.master()).cloned();
            self.next = master.map(|m| std::thread::spawn(move || HostEncoded::encode(&m, f).map(Arc::new)));
        }
    }
}

/// Step times and the largest device memory reading of a scan.
struct ScanTimes {
    steps: StepTimes,
    peak_device_bytes: u64,
}

impl ScanTimes {
    fn sample(&mut self, model: &Model) {
        let m = crate::bench::memory::read(model.device());
        self.peak_device_bytes = self.peak_device_bytes.max(m.peak.max(m.used));
    }
}

/// A progress line on stderr every 30 s when stderr is not a terminal (batch jobs, logs), where
/// no bar is drawn.
struct Heartbeat {
    total: usize,
    start: Instant,
    last: Instant,
    on: bool,
}

impl Heartbeat {
    fn new(total: usize) -> Self {
        let now = Instant::now();
        Self { total, start: now, last: now, on: !std::io::stderr().is_terminal() }
    }

    fn tick(&mut self, done: usize) {
        if !self.on || self.last.elapsed() < Duration::from_secs(30) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64();
        let eta = secs / done.max(1) as f64 * (self.total - done) as f64;
        crate::report::console::note(&format!("scan: {done}/{} items, {secs:.0} s, about {eta:.0} s left", self.total));
    }
}
