//! Per-token metrics from logits: negative log-likelihood, KL divergence against a reference
//! distribution kept as top-k log-probs, and top-1 agreement. Host-side, one rayon task per row.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// The reference (all-f16) distributions of a window, kept as the top-k log-probs of each scored
/// position: `k` entries per position, most probable first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefDist {
    pub k: usize,
    pub ids: Vec<u32>,
    pub logp: Vec<f32>,
}

impl RefDist {
    /// Scored positions held.
    pub fn len(&self) -> usize {
        self.ids.len() / self.k.max(1)
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// What one scored token contributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenStat {
    pub nll: f64,
    pub kld: Option<f64>,
    pub same_top: Option<bool>,
}

/// Log-probs of row `logits` in f32 (computed in f64, rounded once, so two identical rows give
/// bit-identical results).
fn log_softmax_row(row: &[f32]) -> (f64, impl Fn(usize) -> f32 + '_) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    (lse, move |i: usize| (row[i] as f64 - lse) as f32)
}

fn rows(logits: &Tensor) -> Result<(Vec<f32>, usize)> {
    let (t, v) = logits.dims2()?;
    let flat = logits.flatten_all()?.to_vec1::<f32>()?;
    debug_assert_eq!(flat.len(), t * v);
    Ok((flat, v))
}

/// The top-`k` reference distribution of every row of logits `[n, vocab]` (each row a scored
/// position).
pub fn reference(logits: &Tensor, k: usize) -> Result<RefDist> {
    let (flat, v) = rows(logits)?;
    let n = flat.len() / v;
    let k = k.min(v);
    let per_row: Vec<(Vec<u32>, Vec<f32>)> = flat
        .par_chunks(v)
        .map(|row| {
            let (_, lp) = log_softmax_row(row);
            let mut idx: Vec<u32> = (0..v as u32).collect();
            // partial sort: the k largest logits, then order them (ties by id for determinism)
            let cmp = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
            if k < v {
                idx.select_nth_unstable_by(k, cmp);
                idx.truncate(k);
            }
            idx.sort_by(cmp);
            let logp = idx.iter().map(|&i| lp(i as usize)).collect();
            (idx, logp)
        })
        .collect();
    let mut out = RefDist { k, ids: Vec::with_capacity(n * k), logp: Vec::with_capacity(n * k) };
    for (ids, logp) in per_row {
        out.ids.extend(ids);
        out.logp.extend(logp);
    }
    Ok(out)
}

/// Stats of every row of `logits` `[n, vocab]`; `targets` holds each row's next token.
///
/// KL(P_ref ‖ Q) is summed over the reference's top-k ids plus one bucket for the rest of the
/// vocabulary. Merging the tail into one bucket can only lower the divergence (log-sum
/// inequality), so this is a tight lower bound of the full KLD, exact when the tail is empty, and
/// exactly 0 for identical logits.
pub fn token_stats(logits: &Tensor, targets: &[u32], reference: Option<&RefDist>) -> Result<Vec<TokenStat>> {
    let (flat, v) = rows(logits)?;
    let n = targets.len();
    if flat.len() != n * v {
        candle_core::bail!("logits hold {} rows for {n} targets", flat.len() / v);
    }
    if let Some(r) = reference.filter(|r| r.len() != n) {
        candle_core::bail!("{n} logit rows for a reference of {} positions", r.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= v) {
        candle_core::bail!("token id {t} is outside the vocabulary of {v}");
    }
    let stats = flat
        .par_chunks(v)
        .enumerate()
        .map(|(pos, row)| {
            let (_, lq) = log_softmax_row(row);
            let nll = -(lq(targets[pos] as usize) as f64);
            let Some(r) = reference else { return TokenStat { nll, kld: None, same_top: None } };
            let (ids, lp) = (&r.ids[pos * r.k..(pos + 1) * r.k], &r.logp[pos * r.k..(pos + 1) * r.k]);
            let (mut kld, mut p_top, mut q_top) = (0f64, 0f64, 0f64);
            for (&i, &lpi) in ids.iter().zip(lp) {
                let lqi = lq(i as usize);
                let p = (lpi as f64).exp();
                kld += p * (lpi as f64 - lqi as f64);
                p_top += p;
                q_top += (lqi as f64).exp();
            }
            let (p_tail, q_tail) = ((1.0 - p_top).max(0.0), (1.0 - q_top).max(1e-30));
            if p_tail > 0.0 {
                kld += p_tail * (p_tail.ln() - q_tail.ln());
            }
            let argmax = row
                .iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best })
                .0;
            TokenStat { nll, kld: Some(kld), same_top: Some(argmax as u32 == ids[0]) }
        })
        .collect();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits(rows: &[Vec<f32>]) -> Tensor {
        let v = rows[0].len();
        Tensor::from_vec(rows.concat(), (rows.len(), v), &Device::Cpu).unwrap()
    }

    #[test]
    fn nll_matches_a_direct_f64_computation() {
        let l = logits(&[vec![1.0, 2.0, 0.5], vec![0.0, 0.0, 3.0]]);
        let s = token_stats(&l, &[1, 2], None).unwrap();
        let lse = |r: [f64; 3]| r.iter().map(|x| x.exp()).sum::<f64>().ln();
        assert!((s[0].nll - (lse([1.0, 2.0, 0.5]) - 2.0)).abs() < 1e-6);
        assert!((s[1].nll - (lse([0.0, 0.0, 3.0]) - 3.0)).abs() < 1e-6);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn kld_is_zero_for_identical_logits_and_exact_with_full_k() {
        let a = logits(&[vec![1.0, 2.0, 0.5, -1.0], vec![0.3, 0.1, 2.0, 0.0]]);
        let b = logits(&[vec![1.5, 1.0, 0.5, -1.0], vec![0.3, 0.9, 1.0, 0.0]]);
        let toks = [1, 2];
        let r = reference(&a, 2).unwrap();
        let same = token_stats(&a, &toks, Some(&r)).unwrap();
        assert!(same.iter().all(|s| s.kld == Some(0.0) && s.same_top == Some(true)));
        // full k: exact KL(P‖Q) in f64
        let full = reference(&a, 4).unwrap();
        let s = token_stats(&b, &toks, Some(&full)).unwrap();
        let soft = |r: &[f64]| {
            let z: f64 = r.iter().map(|x| x.exp()).sum();
            r.iter().map(|x| x.exp() / z).collect::<Vec<_>>()
        };
        let (p, q) = (soft(&[1.0, 2.0, 0.5, -1.0]), soft(&[1.5, 1.0, 0.5, -1.0]));
        let kl: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
        assert!((s[0].kld.unwrap() - kl).abs() < 1e-6, "{:?} vs {kl}", s[0].kld);
        assert_eq!(s[0].same_top, Some(false));
        // top-2 with a tail bucket is a lower bound
        let s2 = token_stats(&b, &toks, Some(&r)).unwrap();
        // (here the tail ids keep their logit ratio, so the bound is tight up to f32 rounding)
        assert!(s2[0].kld.unwrap() <= kl + 1e-6 && s2[0].kld.unwrap() > 0.0, "{:?} {kl}", s2[0]);
    }
}
