//! Per-token metrics as tensor ops on the model's device, so that a scan copies per-token scalars
//! to the host instead of whole logit matrices (`[tokens, vocab]` f32 is gigabytes at 128k vocab).
//!
//! Same definitions as the host path in [`super::metrics`] (which is the plain reference these are
//! tested against): KL(P_ref ‖ Q) over the reference's top-k ids plus one tail bucket, NLL of the
//! next token, top-1 agreement. The log-sum-exp over the vocabulary runs in f32 (max-shifted); the
//! k-sized sums that make up the divergence run in f64, where the small differences of nearly
//! equal distributions need the digits.

use super::metrics::TokenStat;
use candle_core::{DType, Result, Tensor, D};

/// Columns sorted at once when selecting the top k: well inside a CUDA block's shared memory.
const SORT_CHUNK: usize = 2048;

/// Reference distributions of scored positions, on the device.
#[derive(Debug, Clone)]
pub struct DeviceRef {
    /// Entries per position.
    pub k: usize,
    /// `[n, k]` u32: the reference's most probable ids, most probable first.
    pub ids: Tensor,
    /// `[n, k]` f64: their log-probs.
    logp: Tensor,
    /// `[n, k]` f64: their probabilities.
    p: Tensor,
    /// `[n, 1]` f64: probability left outside the top k (≥ 0).
    p_tail: Tensor,
}

impl DeviceRef {
    /// Scored positions held.
    pub fn len(&self) -> usize {
        self.ids.dim(0).unwrap_or(0)
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held on the device.
    pub fn bytes(&self) -> u64 {
        (self.len() * (self.k * (4 + 8 + 8) + 8)) as u64
    }
}

/// Indices `[n, k]` (u32) of the `k` largest entries of each row of `xs` `[n, v]` (f32), largest
/// first. Rows are cut into chunks that are sorted on the device, the best `k` of each chunk kept,
/// until one chunk remains; needs `k ≤ SORT_CHUNK / 2` and `k ≤ v`.
pub fn top_k(xs: &Tensor, k: usize) -> Result<Tensor> {
    let (n, v) = xs.dims2()?;
    if k == 0 || k > v || k > SORT_CHUNK / 2 {
        candle_core::bail!("top-k: k = {k} must be in 1..={} and at most the vocabulary ({v})", SORT_CHUNK / 2);
    }
    let dev = xs.device();
    let mut vals = xs.to_dtype(DType::F32)?.contiguous()?;
    // `ids[i, j]`: the vocabulary id of `vals[i, j]` (None: the column itself).
    let mut ids: Option<Tensor> = None;
    loop {
        let c = vals.dim(1)?;
        if c <= SORT_CHUNK {
            let order = vals.arg_sort_last_dim(false)?.narrow(1, 0, k)?.contiguous()?;
            return match ids {
                Some(ids) => ids.gather(&order, 1),
                None => Ok(order),
            };
        }
        let chunks = c.div_ceil(SORT_CHUNK);
        let pad = chunks * SORT_CHUNK - c;
        let padded =
            if pad > 0 { Tensor::cat(&[&vals, &Tensor::full(f32::NEG_INFINITY, (n, pad), dev)?], 1)? } else { vals };
        // [n, chunks·CHUNK] → [n·chunks, CHUNK] → best k of each chunk, as positions in the chunk
        let local = padded.reshape((n * chunks, SORT_CHUNK))?.arg_sort_last_dim(false)?.narrow(1, 0, k)?;
        let offsets: Vec<u32> = (0..chunks).map(|c| (c * SORT_CHUNK) as u32).collect();
        let offsets = Tensor::from_vec(offsets, (1, chunks, 1), dev)?;
        // [n, chunks, k] positions in the padded row → [n, chunks·k]
        let pos = local.reshape((n, chunks, k))?.broadcast_add(&offsets)?.reshape((n, chunks * k))?.contiguous()?;
        vals = padded.gather(&pos, 1)?.contiguous()?;
        ids = Some(match ids {
            // Padding positions carry id 0; they hold -inf and lose to any real entry.
            Some(prev) => Tensor::cat(&[&prev, &Tensor::zeros((n, pad), DType::U32, dev)?], 1)?.gather(&pos, 1)?,
            None => pos.minimum((v - 1) as u32 as f64)?,
        });
    }
}

/// Log-sum-exp of each row of `logits` `[n, v]`: `[n, 1]` f32.
fn row_lse(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let sum = logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?;
    sum.log()? + max
}

/// The top-`k` reference of every row of `logits` `[n, v]` (each row a scored position).
pub fn reference(logits: &Tensor, k: usize) -> Result<DeviceRef> {
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let ids = top_k(&logits, k)?;
    let lse = row_lse(&logits)?.to_dtype(DType::F64)?;
    let logp = logits.gather(&ids, 1)?.to_dtype(DType::F64)?.broadcast_sub(&lse)?;
    let p = logp.exp()?;
    let p_tail = (1.0 - p.sum_keepdim(1)?)?.maximum(0.0)?;
    Ok(DeviceRef { k: ids.dim(1)?, ids, logp, p, p_tail })
}

/// Stats of every row of `logits` `[n, v]`: `targets` `[n]` u32 holds each row's next token.
pub fn token_stats(logits: &Tensor, targets: &Tensor, reference: Option<&DeviceRef>) -> Result<Vec<TokenStat>> {
    let logits = logits.to_dtype(DType::F32)?.contiguous()?;
    let n = logits.dim(0)?;
    if targets.dims1()? != n {
        candle_core::bail!("{n} logit rows for {} targets", targets.dims1()?);
    }
    let lse = row_lse(&logits)?;
    let target = logits.gather(&targets.reshape((n, 1))?, 1)?;
    let nll = (lse.to_dtype(DType::F64)? - target.to_dtype(DType::F64)?)?.flatten_all()?.to_vec1::<f64>()?;
    let Some(r) = reference else {
        return Ok(nll.into_iter().map(|nll| TokenStat { nll, kld: None, same_top: None }).collect());
    };
    if r.len() != n {
        candle_core::bail!("{n} logit rows for a reference of {} positions", r.len());
    }
    let lq = logits.gather(&r.ids, 1)?.to_dtype(DType::F64)?.broadcast_sub(&lse.to_dtype(DType::F64)?)?;
    let top = (&r.p * (&r.logp - &lq)?)?.sum_keepdim(1)?;
    let q_tail = (1.0 - lq.exp()?.sum_keepdim(1)?)?.maximum(1e-30)?;
    // p_tail·ln(p_tail / q_tail), 0 where the reference has no tail (the log's argument is
    // floored so 0·ln 0 does not become NaN).
    let tail = (&r.p_tail * (r.p_tail.maximum(1e-300)?.log()? - q_tail.log()?)?)?;
    let kld = (top + tail)?.flatten_all()?.to_vec1::<f64>()?;
    let argmax = logits.argmax_keepdim(D::Minus1)?;
    let same = argmax.eq(&r.ids.narrow(1, 0, 1)?)?.flatten_all()?.to_vec1::<u8>()?;
    Ok((0..n).map(|i| TokenStat { nll: nll[i], kld: Some(kld[i]), same_top: Some(same[i] != 0) }).collect())
}

#[cfg(test)]
mod tests {
    use super::super::metrics;
    use super::*;
    use candle_core::Device;

    /// Random logits with a spread like real ones.
    fn logits(n: usize, v: usize) -> Tensor {
        Tensor::randn(0f32, 3.0, (n, v), &Device::Cpu).unwrap()
    }

    #[test]
    fn top_k_equals_a_full_sort() {
        for (n, v, k) in [(3, 5000, 64), (2, 2048, 7), (4, 9000, 1), (2, 300, 300)] {
            let x = logits(n, v);
            let got = top_k(&x, k).unwrap().to_vec2::<u32>().unwrap();
            let rows = x.to_vec2::<f32>().unwrap();
            for (row, ids) in rows.iter().zip(&got) {
                let mut want: Vec<u32> = (0..v as u32).collect();
                want.sort_by(|a, b| row[*b as usize].total_cmp(&row[*a as usize]));
                let vals = |ids: &[u32]| ids.iter().map(|&i| row[i as usize]).collect::<Vec<_>>();
                assert_eq!(vals(ids), vals(&want[..k]), "n {n} v {v} k {k}");
            }
        }
        assert!(top_k(&logits(1, 10), 0).is_err());
        assert!(top_k(&logits(1, 10), 11).is_err());
    }

    #[test]
    fn device_stats_match_the_host_reference() {
        let (n, v, k) = (6, 3000, 32);
        let a = logits(n, v);
        let noise = Tensor::randn(0f32, 0.3, (n, v), &Device::Cpu).unwrap();
        let b = (&a + noise).unwrap();
        let tokens: Vec<u32> = (0..n as u32).map(|i| i * 37 % v as u32).collect();
        let host_ref = metrics::reference(&a, k).unwrap();
        let host = metrics::token_stats(&b, &tokens, Some(&host_ref)).unwrap();
        let dref = reference(&a, k).unwrap();
        let targets = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap();
        let dev = token_stats(&b, &targets, Some(&dref)).unwrap();
        assert_eq!(host.len(), dev.len());
        for (h, d) in host.iter().zip(&dev) {
            assert!((h.nll - d.nll).abs() < 1e-4 * h.nll.abs().max(1.0), "{h:?} {d:?}");
            let (hk, dk) = (h.kld.unwrap(), d.kld.unwrap());
            assert!((hk - dk).abs() < 1e-5 + 1e-4 * hk, "{h:?} {d:?}");
            assert_eq!(h.same_top, d.same_top);
        }
        let same = token_stats(&a, &targets, Some(&dref)).unwrap();
        assert!(same.iter().all(|s| s.kld.unwrap().abs() < 1e-12 && s.same_top == Some(true)), "{same:?}");
    }
}
