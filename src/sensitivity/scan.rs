//! The per-layer sensitivity scan: one layer at a time in one format, everything else f16, scored
//! against the all-f16 model on calibration windows.
//!
//! Prefix caching: changing a layer of block b leaves blocks 0..b untouched, so the all-f16 hidden
//! states entering every block are computed once per batch of windows and a layer of block b is
//! evaluated by running only blocks b.. (and the head) from the cached input. Windows run several
//! to a forward, and per-token metrics are computed where the logits are (see `eval::batch`).

use super::timing::StepTimes;
use crate::error::Error;
use crate::eval::batch::{self, Batch, MetricsAt, Reference};
use crate::eval::summarize;
use crate::model::{Cache, LayerId, Model};
use crate::quant::Precision;
use candle_core::{Device, Tensor};

/// Which metric a sensitivity is the increase of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Mean KL divergence against the all-f16 model.
    Kld,
    /// Perplexity.
    Ppl,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "kld" => Ok(Self::Kld),
            "ppl" => Ok(Self::Ppl),
            _ => Err(format!("unknown metric `{s}` (expected kld or ppl)")),
        }
    }
}

/// Where the prefix cache lives and how many windows go to a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Placement {
    pub windows_per_batch: usize,
    /// The cached block inputs stay on the host and are uploaded per use: they would not fit on
    /// the device beside the model and one batch.
    pub prefix_on_host: bool,
    /// Bytes of the prefix cache.
    pub prefix_bytes: u64,
}

/// Decides the placement for `windows`, or refuses (exit 2, with the numbers) settings that
/// cannot fit: one window that does not fit on the device, or a prefix cache that fits nowhere.
pub fn placement(model: &Model, windows: &[Vec<u32>]) -> crate::Result<Placement> {
    let gb = |b: u64| b as f64 / 1e9;
    let seq_len = windows.iter().map(Vec::len).max().unwrap_or(0);
    let tokens: u64 = windows.iter().map(|w| w.len() as u64).sum();
    let c = model.config();
    let act = model.act_dtype().size_in_bytes() as u64;
    let prefix_bytes = (model.n_blocks() as u64 + 1) * tokens * c.hidden_size as u64 * act;
    let free = crate::bench::memory::free_bytes(model.device());
    let window = batch::window_bytes(model, seq_len);
    let known = free > 0;
    if known && window > free {
        return Err(Error::input(format!(
            "one window of {seq_len} tokens needs about {:.2} GB in flight, the device has {:.2} GB free: lower --ctx",
            gb(window),
            gb(free)
        )));
    }
    let windows_per_batch = batch::windows_per_batch(model, seq_len);
    let device_room = free.saturating_sub(window * windows_per_batch as u64);
    let prefix_on_host = !model.device().is_cpu() && known && prefix_bytes > device_room / 2;
    let host = crate::bench::memory::host_available();
    let on_host_need = if prefix_on_host || model.device().is_cpu() { prefix_bytes } else { 0 };
    if host > 0 && on_host_need > host {
        return Err(Error::input(format!(
            "the prefix cache needs {:.2} GB ({tokens} tokens × {} block inputs × {} hidden), more than the \
             {:.2} GB free on the device and the {:.2} GB available on the host: lower --calib-tokens",
            gb(prefix_bytes),
            model.n_blocks() + 1,
            c.hidden_size,
            gb(free),
            gb(host)
        )));
    }
    Ok(Placement { windows_per_batch, prefix_on_host, prefix_bytes })
}

/// The all-f16 state of the calibration windows.
pub struct Baseline {
    pub batches: Vec<Batch>,
    /// `inputs[i][b]`: hidden states `[windows, seq_len, hidden]` of batch i entering block b; the
    /// last entry (b = n_blocks) is the output of the last block, the input of the head.
    inputs: Vec<Vec<Tensor>>,
    pub refs: Vec<Reference>,
    /// The f16 perplexity on the windows, for `--metric ppl`.
    pub ppl: f64,
    pub at: MetricsAt,
    pub placement: Placement,
}

impl Baseline {
    /// Scored tokens.
    pub fn tokens(&self) -> usize {
        self.batches.iter().map(|b| b.range.len() * (b.seq_len - 1)).sum()
    }
}

/// Runs the all-f16 model once over `windows`, keeping block inputs and top-`k` references.
pub fn baseline(model: &Model, windows: &[Vec<u32>], k: usize, placement: Placement) -> crate::Result<Baseline> {
    let at = MetricsAt::for_device(model.device());
    let batches = batch::make(model, windows, placement.windows_per_batch)?;
    let keep = |xs: &Tensor| if placement.prefix_on_host { xs.to_device(&Device::Cpu) } else { Ok(xs.clone()) };
    let (mut inputs, mut refs, mut stats) = (Vec::new(), Vec::new(), Vec::new());
    for b in &batches {
        let mut cache = Cache::scoring();
        let mut xs = model.embed(&b.ids)?;
        let mut per_block = Vec::with_capacity(model.n_blocks() + 1);
        for n in 0..model.n_blocks() {
            per_block.push(keep(&xs)?);
            xs = model.forward_block(n, &xs, 0, &mut cache)?;
        }
        per_block.push(keep(&xs)?);
        let logits = batch::scored_logits(model, &xs)?;
        refs.push(batch::reference(b, &logits, k, at)?);
        stats.extend(batch::stats(b, &logits, None, at)?);
        inputs.push(per_block);
    }
    let ppl = summarize(&stats).ppl;
    if !ppl.is_finite() {
        return Err(Error::Runtime(format!(
            "the f16 model's perplexity on the calibration text is not finite ({ppl}): its activations overflow in {:?}",
            model.act_dtype()
        )));
    }
    Ok(Baseline { batches, inputs, refs, ppl, at, placement })
}

/// Per-token stats of the model as it is now, starting from the cached input of block `from`.
pub fn stats_from(
    model: &Model,
    base: &Baseline,
    from: usize,
    times: &mut StepTimes,
) -> crate::Result<Vec<crate::eval::metrics::TokenStat>> {
    let dev = model.device();
    let mut out = Vec::with_capacity(base.tokens());
    for (i, b) in base.batches.iter().enumerate() {
        let xs = times.time("upload", dev, || base.inputs[i][from].to_device(dev))?;
        let xs = times.time("blocks", dev, || model.forward_blocks(&xs, from, 0, &mut Cache::scoring()))?;
        let logits = times.time("head", dev, || batch::scored_logits(model, &xs))?;
        out.extend(times.time("metrics", dev, || batch::stats(b, &logits, Some(&base.refs[i]), base.at))?);
    }
    Ok(out)
}

/// One finished (layer, format) measurement: a line of `scan.jsonl`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScanItem {
    pub layer: String,
    pub format: Precision,
    /// Increase of the metric over all-f16.
    pub score: f64,
    pub kld_mean: f64,
    pub ppl: f64,
    pub top1_agreement: f64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Measures layer `id` in `format` (all else f16), then restores it to f16.
pub fn measure(
    model: &mut Model,
    base: &Baseline,
    id: LayerId,
    format: Precision,
    metric: Metric,
    times: &mut StepTimes,
) -> crate::Result<ScanItem> {
    let t = std::time::Instant::now();
    let dev = model.device().clone();
    times.time("encode", &dev, || model.set_precision(id, format))?;
    // The LM head has no block: start from the head input.
    let from = id.block.unwrap_or(model.n_blocks());
    let stats = stats_from(model, base, from, times);
    times.time("restore", &dev, || model.set_precision(id, Precision::F16))?;
    let s = summarize(&stats?);
    let kld = s.kld.as_ref().map_or(0.0, |k| k.mean);
    let score = match metric {
        Metric::Kld => kld,
        Metric::Ppl => s.ppl - base.ppl,
    };
    if !(score.is_finite() && s.ppl.is_finite()) {
        return Err(Error::Runtime(format!(
            "{id} in {format}: the metrics are not finite (KLD {kld}, PPL {}): activations overflow in {:?}",
            s.ppl,
            model.act_dtype()
        )));
    }
    let (o, i) = model.linear(id).map_or((0, 0), |l| l.shape());
    Ok(ScanItem {
        layer: id.to_string(),
        format,
        score,
        kld_mean: kld,
        ppl: s.ppl,
        top1_agreement: s.kld.map_or(1.0, |k| k.top1_agreement),
        bytes: format.weight_bytes(o, i),
        seconds: t.elapsed().as_secs_f64(),
    })
}
