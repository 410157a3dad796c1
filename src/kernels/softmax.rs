//! The attention softmax of a prefill (or an eager decode step): `softmax(scale·q·kᵀ + mask)` with
//! the causal mask. On the GPU one kernel (`cuda/attention.cu`'s causal_softmax); elsewhere, and as
//! the reference it is checked against, candle's ops in f32.

use candle_core::{DType, Device, Result, Tensor, D};

/// Probabilities `[…, rows, total]` in the dtype of `scores` (`q·kᵀ`, unscaled), whose row r is the
/// query `r % t` at position `start + r % t`: it sees keys `0..=start + r % t`, and the rest get 0.
pub fn causal_softmax(scores: &Tensor, scale: f64, t: usize, start: usize) -> Result<Tensor> {
    check(scores, t)?;
    #[cfg(feature = "cuda")]
    if scores.device().is_cuda() && super::op::enabled() && scores.is_contiguous() {
        return super::cuda::prefill::causal_softmax(scores, scale as f32, t, start);
    }
    causal_softmax_reference(scores, scale, t, start)
}

/// [`causal_softmax`] by candle's ops: scale, cast to f32, add the mask, softmax, cast back.
pub fn causal_softmax_reference(scores: &Tensor, scale: f64, t: usize, start: usize) -> Result<Tensor> {
    check(scores, t)?;
    let dims = scores.dims().to_vec();
    let total = dims[dims.len() - 1];
    let att = (scores * scale)?.to_dtype(DType::F32)?;
    let att = match causal_mask(t, total, start, scores.device())? {
        // (…, rows, total) → (rows / t, t, total) + mask (t, total)
        Some(mask) => {
            att.reshape((scores.elem_count() / (t * total), t, total))?.broadcast_add(&mask)?.reshape(dims)?
        }
        None => att,
    };
    candle_nn::ops::softmax_last_dim(&att)?.to_dtype(scores.dtype())
}

fn check(scores: &Tensor, t: usize) -> Result<()> {
    let rows = scores.dims().iter().rev().skip(1).product::<usize>();
    if scores.rank() < 2 || t == 0 || !rows.is_multiple_of(t) || scores.dim(D::Minus1)? == 0 {
        candle_core::bail!("causal softmax: scores {:?} do not hold rows of {t} queries", scores.dims());
    }
    Ok(())
}

/// Additive mask `(t, total)`: query i (at position start + i) sees keys 0..=start + i. None for one
/// query, which sees every key.
fn causal_mask(t: usize, total: usize, start: usize, device: &Device) -> Result<Option<Tensor>> {
    if t == 1 {
        return Ok(None);
    }
    let mask: Vec<f32> =
        (0..t).flat_map(|i| (0..total).map(move |j| if j > start + i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (t, total), device).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_see_only_their_past_and_sum_to_one() -> Result<()> {
        // 2 heads × 3 queries at positions 2, 3, 4 against 5 keys
        let scores = Tensor::randn(0f32, 1.0, (2, 3, 5), &Device::Cpu)?;
        let probs = causal_softmax(&scores, 0.5, 3, 2)?.to_vec3::<f32>()?;
        for head in &probs {
            for (i, row) in head.iter().enumerate() {
                let seen = 2 + i + 1;
                assert!(row[seen..].iter().all(|&p| p == 0.0), "row {i} sees the future: {row:?}");
                assert!(row[..seen].iter().all(|&p| p > 0.0));
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
        Ok(())
    }

    #[test]
    fn matches_a_plain_softmax_of_the_visible_keys() -> Result<()> {
        let scores = Tensor::new(&[[1f32, 2.0, 3.0], [0.5, -1.0, 2.0]], &Device::Cpu)?;
        let probs = causal_softmax(&scores, 2.0, 2, 1)?.to_vec2::<f32>()?;
        // query 0 at position 1 sees keys 0, 1; query 1 at position 2 sees all three
        let e = |xs: &[f32]| -> Vec<f32> {
            let s: f32 = xs.iter().map(|x| (2.0 * x).exp()).sum();
            xs.iter().map(|x| (2.0 * x).exp() / s).collect()
        };
        let (a, b) = (e(&[1.0, 2.0]), e(&[0.5, -1.0, 2.0]));
        for (got, want) in probs[0].iter().zip(a.iter().chain([0.0].iter())).chain(probs[1].iter().zip(b.iter())) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        Ok(())
    }

    #[test]
    fn rejects_rows_that_are_not_whole_queries() {
        let scores = Tensor::zeros((5, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(causal_softmax(&scores, 1.0, 2, 0).is_err());
        assert!(causal_softmax(&scores, 1.0, 0, 0).is_err());
    }
}
