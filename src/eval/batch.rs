//! Windows scored several at a time: one forward over `[windows, seq_len]` instead of one per
//! window, and per-token metrics where the logits are (the device on a GPU, the host on a CPU).

use super::device::{self as on_device, DeviceRef};
use super::metrics::{self, RefDist, TokenStat};
use crate::model::Model;
use candle_core::{DType, Device, Result, Tensor};
use std::ops::Range;

/// Where per-token metrics are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAt {
    /// On the host in f64 from copied logits: the reference implementation (CPU default).
    Host,
    /// As tensor ops where the logits are; only per-token scalars are copied (GPU default).
    Device,
}

impl MetricsAt {
    /// The default for `device`; `MINILAB_METRICS=host|device` overrides it (for comparisons).
    pub fn for_device(device: &Device) -> Self {
        match std::env::var("MINILAB_METRICS").as_deref() {
            Ok("host") => Self::Host,
            Ok("device") => Self::Device,
            _ if device.is_cpu() => Self::Host,
            _ => Self::Device,
        }
    }
}

/// Consecutive windows of equal length, scored in one forward.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Which windows (indexes into the window list).
    pub range: Range<usize>,
    /// `[windows, seq_len]` u32 on the model's device.
    pub ids: Tensor,
    /// `[windows·(seq_len − 1)]` u32 on the device: the next token of every scored position.
    pub targets: Tensor,
    /// Tokens per window.
    pub seq_len: usize,
}

/// A reference (all-f16) distribution of one batch's scored positions.
#[derive(Debug, Clone)]
pub enum Reference {
    /// Per window, on the host.
    Host(Vec<RefDist>),
    /// All positions of the batch, on the device.
    Device(DeviceRef),
}

/// How many windows of `seq_len` tokens one forward takes: 1 on a CPU (nothing to gain and the
/// logits would only cost memory); on a GPU as many as fit in a quarter of the free memory, at
/// most 16,384 tokens (larger matmuls gain nothing more).
pub fn windows_per_batch(model: &Model, seq_len: usize) -> usize {
    if model.device().is_cpu() {
        return 1;
    }
    let free = crate::bench::memory::free_bytes(model.device());
    let per_window = window_bytes(model, seq_len).max(1);
    ((free / 4 / per_window) as usize).clamp(1, (16_384 / seq_len.max(1)).max(1))
}

/// Device bytes one window of `seq_len` tokens needs in flight: the f32 logits and their
/// temporaries (about 3 copies), the MLP and attention intermediates.
pub fn window_bytes(model: &Model, seq_len: usize) -> u64 {
    let c = model.config();
    let t = seq_len as u64;
    let act = model.act_dtype().size_in_bytes() as u64;
    let logits = 3 * 4 * t * c.vocab_size as u64;
    let mlp = 3 * act * t * c.intermediate_size as u64;
    let attn = 3 * 4 * t * t * c.num_attention_heads as u64;
    let hidden = 8 * act * t * c.hidden_size as u64;
    logits + mlp + attn + hidden
}

/// Ranges of consecutive equal-length windows, at most `per_batch` each.
pub fn plan(windows: &[Vec<u32>], per_batch: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        match out.last_mut() {
            Some(r) if r.len() < per_batch.max(1) && windows[r.start].len() == w.len() => r.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// Builds the batches of `windows` on the model's device.
pub fn make(model: &Model, windows: &[Vec<u32>], per_batch: usize) -> Result<Vec<Batch>> {
    plan(windows, per_batch)
        .into_iter()
        .map(|range| {
            let ws = &windows[range.clone()];
            let seq_len = ws[0].len();
            let flat: Vec<u32> = ws.concat();
            let ids = Tensor::from_vec(flat, (ws.len(), seq_len), model.device())?;
            let targets: Vec<u32> = ws.iter().flat_map(|w| w[1..].iter().copied()).collect();
            let targets = Tensor::from_vec(targets, ws.len() * (seq_len - 1), model.device())?;
            Ok(Batch { range, ids, targets, seq_len })
        })
        .collect()
}

/// Logits `[windows·(seq_len − 1), vocab]` (f32) of every scored position, from the hidden
/// states `[windows, seq_len, hidden]` leaving the last block. The last position of a window
/// predicts nothing inside it, so the head skips it.
pub fn scored_logits(model: &Model, xs: &Tensor) -> Result<Tensor> {
    let (b, t, _) = xs.dims3()?;
    let logits = model.head(&xs.narrow(1, 0, t - 1)?.contiguous()?)?;
    logits.reshape((b * (t - 1), model.config().vocab_size))
}

/// Runs the whole model on a batch: scored logits.
pub fn forward(model: &Model, batch: &Batch) -> Result<Tensor> {
    let xs = model.embed(&batch.ids)?;
    let mut cache = crate::model::Cache::scoring();
    let xs = model.forward_blocks(&xs, 0, 0, &mut cache)?;
    scored_logits(model, &xs)
}

/// The windows of a batch as host token lists.
fn window_rows(batch: &Batch) -> Result<Vec<Vec<u32>>> {
    batch.ids.to_device(&Device::Cpu)?.to_vec2::<u32>()
}

/// Rows of window `w` of a batch's scored logits, on the host.
fn host_rows(logits: &Tensor, batch: &Batch, w: usize) -> Result<Tensor> {
    let n = batch.seq_len - 1;
    logits.narrow(0, w * n, n)?.to_device(&Device::Cpu)?.to_dtype(DType::F32)
}

/// The top-`k` reference of a batch from its scored logits.
pub fn reference(batch: &Batch, logits: &Tensor, k: usize, at: MetricsAt) -> Result<Reference> {
    match at {
        MetricsAt::Device => Ok(Reference::Device(on_device::reference(logits, k)?)),
        MetricsAt::Host => {
            let logits = logits.to_device(&Device::Cpu)?;
            let refs = (0..batch.range.len()).map(|w| metrics::reference(&host_rows(&logits, batch, w)?, k));
            Ok(Reference::Host(refs.collect::<Result<_>>()?))
        }
    }
}

/// Per-token stats of a batch from its scored logits, against `reference` when given; the
/// reference decides where the work runs.
pub fn stats(batch: &Batch, logits: &Tensor, reference: Option<&Reference>, at: MetricsAt) -> Result<Vec<TokenStat>> {
    match (reference, at) {
        (Some(Reference::Device(r)), _) => on_device::token_stats(logits, &batch.targets, Some(r)),
        (None, MetricsAt::Device) => on_device::token_stats(logits, &batch.targets, None),
        (r, _) => {
            let logits = logits.to_device(&Device::Cpu)?;
            let rows = window_rows(batch)?;
            let mut out = Vec::with_capacity(logits.dim(0)?);
            for (w, row) in rows.iter().enumerate() {
                let refs = match r {
                    Some(Reference::Host(refs)) => Some(&refs[w]),
                    _ => None,
                };
                out.extend(metrics::token_stats(&host_rows(&logits, batch, w)?, &row[1..], refs)?);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_keep_order_and_group_only_equal_lengths() {
        let w = |n: usize| vec![0u32; n];
        let windows = vec![w(4), w(4), w(4), w(4), w(4), w(2)];
        assert_eq!(plan(&windows, 2), vec![0..2, 2..4, 4..5, 5..6]);
        assert_eq!(plan(&windows, 16), vec![0..5, 5..6]);
        assert_eq!(plan(&windows, 0), vec![0..1, 1..2, 2..3, 3..4, 4..5, 5..6]);
        assert!(plan(&[], 4).is_empty());
    }
}
