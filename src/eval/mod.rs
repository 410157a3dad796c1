//! Perplexity and KL divergence on held-out text (DESIGN.md §3).

pub mod metrics;
pub mod text;

use crate::model::{Cache, Model};
use candle_core::{Result, Tensor};
use metrics::{RefDist, TokenStat};
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

/// Logits `[n, vocab]` of one window, from an empty cache.
pub fn window_logits(model: &Model, window: &[u32]) -> Result<Tensor> {
    let ids = Tensor::new(window, model.device())?.unsqueeze(0)?;
    let mut cache = Cache::new(model.n_blocks());
    model.forward(&ids, 0, &mut cache)?.squeeze(0)
}

/// Top-`k` reference distributions of every window.
pub fn references(model: &Model, windows: &[Vec<u32>], k: usize, pb: &indicatif::ProgressBar) -> Result<Vec<RefDist>> {
    windows
        .iter()
        .map(|w| {
            let r = metrics::reference(&window_logits(model, w)?, k);
            pb.inc(1);
            r
        })
        .collect()
}

/// Per-token stats of every window, against `refs` when given.
pub fn score(
    model: &Model,
    windows: &[Vec<u32>],
    refs: Option<&[RefDist]>,
    pb: &indicatif::ProgressBar,
) -> Result<Vec<TokenStat>> {
    let mut out = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        out.extend(metrics::token_stats(&window_logits(model, w)?, w, refs.map(|r| &r[i]))?);
        pb.inc(1);
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
