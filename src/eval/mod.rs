//! Perplexity and KL divergence on held-out text (DESIGN.md §3).

pub mod batch;
pub mod device;
pub mod metrics;
pub mod synthetic;
pub mod text;

use crate::model::Model;
use batch::{MetricsAt, Reference};
use candle_core::Result;
use metrics::TokenStat;
use serde::Serialize;

/// KL divergence statistics against the all-f16 model, as llama.cpp reports them.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct KldStats {
    pub mean: f64,
    pub mean_stderr: f64,
    pub median: f64,
    pub p99: f64,
    pub max: f64,
    /// Fraction of positions whose argmax equals the reference's (0–1).
    pub top1_agreement: f64,
}

/// Result of one evaluation.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct EvalSummary {
    pub ppl: f64,
    pub ppl_stderr: f64,
    pub nll_mean: f64,
    /// Scored tokens.
    pub tokens: usize,
    pub kld: Option<KldStats>,
}

impl EvalSummary {
    /// The first metric that is NaN or infinite, by name.
    pub fn first_non_finite(&self) -> Option<(&'static str, f64)> {
        let mut all = vec![("ppl", self.ppl), ("ppl_stderr", self.ppl_stderr), ("nll_mean", self.nll_mean)];
        if let Some(k) = &self.kld {
            all.extend([("kld.mean", k.mean), ("kld.mean_stderr", k.mean_stderr), ("kld.median", k.median)]);
            all.extend([("kld.p99", k.p99), ("kld.max", k.max), ("kld.top1_agreement", k.top1_agreement)]);
        }
        all.into_iter().find(|(_, v)| !v.is_finite())
    }

    /// A NaN or infinite metric means the forward overflowed or the model is broken: an error,
    /// never a number printed as `NaN` or written as `null`.
    pub fn check_finite(&self) -> crate::error::Result<()> {
        match self.first_non_finite() {
            Some((name, v)) => Err(crate::error::Error::Runtime(format!(
                "the evaluation produced a non-finite {name} ({v}): the model's outputs overflowed or are not \
                 numbers (try --dtype f32, or check the model's weights and config)"
            ))),
            None => Ok(()),
        }
    }
}

/// The all-f16 reference distributions of a list of windows, with the batching they were made
/// with (scoring must batch the same way).
#[derive(Debug, Clone)]
pub struct References {
    /// Windows per forward.
    pub per_batch: usize,
    /// One per batch.
    pub refs: Vec<Reference>,
}

/// Top-`k` reference distributions of every window, batched as the device allows.
pub fn references(model: &Model, windows: &[Vec<u32>], k: usize, pb: &indicatif::ProgressBar) -> Result<References> {
    let per_batch = windows.first().map_or(1, |w| batch::windows_per_batch(model, w.len()));
    let at = MetricsAt::for_device(model.device());
    let mut refs = Vec::new();
    for b in batch::make(model, windows, per_batch)? {
        let logits = batch::forward(model, &b)?;
        refs.push(batch::reference(&b, &logits, k, at)?);
        pb.inc(b.range.len() as u64);
    }
    Ok(References { per_batch, refs })
}

/// Per-token stats of every window (in window order), against `refs` when given.
pub fn score(
    model: &Model,
    windows: &[Vec<u32>],
    refs: Option<&References>,
    pb: &indicatif::ProgressBar,
) -> Result<Vec<TokenStat>> {
    let per_batch = match refs {
        Some(r) => r.per_batch,
        None => windows.first().map_or(1, |w| batch::windows_per_batch(model, w.len())),
    };
    let at = MetricsAt::for_device(model.device());
    let mut out = Vec::new();
    for (i, b) in batch::make(model, windows, per_batch)?.iter().enumerate() {
        let logits = batch::forward(model, b)?;
        let r = match refs {
            Some(r) => {
                Some(r.refs.get(i).ok_or_else(|| candle_core::Error::Msg("fewer references than batches".into()))?)
            }
            None => None,
        };
        out.extend(batch::stats(b, &logits, r, at)?);
        pb.inc(b.range.len() as u64);
    }
    Ok(out)
}

/// PPL ± stderr (delta method on the mean NLL) and KLD statistics of per-token stats.
pub fn summarize(stats: &[TokenStat]) -> EvalSummary {
    let n = stats.len().max(1) as f64;
    let nll: Vec<f64> = stats.iter().map(|s| s.nll).collect();
    let (mean, sd) = mean_sd(&nll);
    let ppl = mean.exp();
    let kld = stats.first().and_then(|s| s.kld).map(|_| {
        let mut k: Vec<f64> = stats.iter().filter_map(|s| s.kld).collect();
        let (kmean, ksd) = mean_sd(&k);
        k.sort_by(f64::total_cmp);
        let top1 = stats.iter().filter(|s| s.same_top == Some(true)).count() as f64 / n;
        KldStats {
            mean: kmean,
            mean_stderr: ksd / n.sqrt(),
            median: quantile(&k, 0.5),
            p99: quantile(&k, 0.99),
            max: k.last().copied().unwrap_or(0.0),
            top1_agreement: top1,
        }
    });
    EvalSummary { ppl, ppl_stderr: ppl * sd / n.sqrt(), nll_mean: mean, tokens: stats.len(), kld }
}

/// Mean and sample standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// Linear-interpolated quantile of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let stats: Vec<TokenStat> = [1.0, 2.0, 3.0]
            .iter()
            .map(|&nll| TokenStat { nll, kld: Some(nll / 10.0), same_top: Some(nll < 2.5) })
            .collect();
        let s = summarize(&stats);
        assert!((s.ppl - 2f64.exp()).abs() < 1e-12);
        assert!((s.ppl_stderr - 2f64.exp() * 1.0 / 3f64.sqrt()).abs() < 1e-12);
        let k = s.kld.unwrap();
        assert!((k.mean - 0.2).abs() < 1e-12 && (k.median - 0.2).abs() < 1e-12);
        assert!((k.top1_agreement - 2.0 / 3.0).abs() < 1e-12);
        assert!((quantile(&[0.0, 1.0], 0.99) - 0.99).abs() < 1e-12);
    }
}
