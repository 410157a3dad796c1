//! The per-layer sensitivity scan: one layer at a time in one format, everything else f16, scored
//! against the all-f16 model on calibration windows.
//!
//! Prefix caching: changing a layer of block b leaves blocks 0..b untouched, so the all-f16 hidden
//! states entering every block are computed once per window and a layer of block b is evaluated
//! by running only blocks b.. (and the head) from the cached input.

use crate::eval::metrics::{self, RefDist, TokenStat};
use crate::eval::summarize;
use crate::model::{Cache, LayerId, Model};
use crate::quant::Precision;
use candle_core::{Result, Tensor};

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

/// The all-f16 state of the calibration windows.
pub struct Baseline {
    pub windows: Vec<Vec<u32>>,
    /// `inputs[w][b]`: hidden states `[1, t, hidden]` entering block b of window w; the last entry
    /// (b = n_blocks) is the output of the last block, the input of the head.
    pub inputs: Vec<Vec<Tensor>>,
    pub refs: Vec<RefDist>,
    /// The f16 metric value (PPL) on the windows, for `--metric ppl`.
    pub ppl: f64,
}

/// Runs the all-f16 model once over `windows`, keeping block inputs and top-`k` references.
pub fn baseline(model: &Model, windows: Vec<Vec<u32>>, k: usize) -> Result<Baseline> {
    let mut inputs = Vec::with_capacity(windows.len());
    let mut refs = Vec::with_capacity(windows.len());
    let mut stats = Vec::new();
    for w in &windows {
        let ids = Tensor::new(w.as_slice(), model.device())?.unsqueeze(0)?;
        let mut cache = Cache::new(model.n_blocks());
        let mut xs = model.embed(&ids)?;
        let mut per_block = Vec::with_capacity(model.n_blocks() + 1);
        for b in 0..model.n_blocks() {
            per_block.push(xs.clone());
            xs = model.forward_block(b, &xs, 0, &mut cache)?;
        }
        per_block.push(xs.clone());
        let logits = model.head(&xs)?.squeeze(0)?;
        let r = metrics::reference(&logits, k)?;
        stats.extend(metrics::token_stats(&logits, w, Some(&r))?);
        refs.push(r);
        inputs.push(per_block);
    }
    let ppl = summarize(&stats).ppl;
    Ok(Baseline { windows, inputs, refs, ppl })
}

/// Per-token stats of the model as it is now, starting from the cached input of block `from`.
pub fn stats_from(model: &Model, base: &Baseline, from: usize) -> Result<Vec<TokenStat>> {
    let mut out = Vec::new();
    for (w, window) in base.windows.iter().enumerate() {
        let mut cache = Cache::new(model.n_blocks());
        let xs = model.forward_blocks(&base.inputs[w][from], from, 0, &mut cache)?;
        let logits = model.head(&xs)?.squeeze(0)?;
        out.extend(metrics::token_stats(&logits, window, Some(&base.refs[w]))?);
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
pub fn measure(model: &mut Model, base: &Baseline, id: LayerId, format: Precision, metric: Metric) -> Result<ScanItem> {
    let t = std::time::Instant::now();
    model.set_precision(id, format)?;
    // The LM head has no block: start from the head input.
    let from = id.block.unwrap_or(model.n_blocks());
    let stats = stats_from(model, base, from);
    model.set_precision(id, Precision::F16)?;
    let s = summarize(&stats?);
    let kld = s.kld.as_ref().map_or(0.0, |k| k.mean);
    let score = match metric {
        Metric::Kld => kld,
        Metric::Ppl => s.ppl - base.ppl,
    };
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
