//! Symmetric int8 weights with one absmax scale per output row (the LLM.int8() weight format).
//!
//! `scale_r = absmax(row r) / 127` (an f32 division) and `q = round(w / scale_r)` clamped to
//! [-127, 127], rounding half AWAY from zero (`f32::round`), so the format is symmetric and -128 is
//! never used. An all-zero row gets scale 0 and codes 0 (no division by zero, no NaN).
//!
//! bitsandbytes' `int8_vectorwise_quant` computes `w * (127 / absmax)` and rounds half to EVEN,
//! and stores absmax rather than absmax/127: the codes differ only for values that land exactly
//! on a .5 (or within an ulp of one), which real weights practically never do.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// The offset added to the signed codes to store them in candle's `U8` (candle has no i8 dtype).
pub const CODE_OFFSET: i16 = 128;

/// An `out_features × in_features` weight in per-row symmetric int8.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Weight {
    /// Row-major codes in [-127, 127].
    pub q: Vec<i8>,
    /// One f32 scale per output row; `w ≈ q * scale`.
    pub scales: Vec<f32>,
    /// Rows of the weight.
    pub out_features: usize,
    /// Columns of the weight.
    pub in_features: usize,
}

impl Int8Weight {
    /// Quantize a row-major `out_features × in_features` f32 weight, one rayon task per row.
    ///
    /// # Panics
    /// If `w.len() != out_features * in_features`.
    pub fn quantize(w: &[f32], out_features: usize, in_features: usize) -> Self {
        assert_eq!(
            w.len(),
            out_features * in_features,
            "weight has {} values, expected {out_features}×{in_features}",
            w.len()
        );
        let mut q = vec![0i8; w.len()];
        let mut scales = vec![0f32; out_features];
        if in_features > 0 {
            w.par_chunks(in_features).zip(q.par_chunks_mut(in_features)).zip(scales.par_iter_mut()).for_each(
                |((row, qrow), scale)| {
                    let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let s = absmax / 127.0;
                    *scale = s;
                    if s > 0.0 {
                        for (o, &v) in qrow.iter_mut().zip(row) {
                            // NaN (from a non-finite row) saturates to 0 in the cast.
                            *o = (v / s).round().clamp(-127.0, 127.0) as i8;
                        }
                    }
                },
            );
        }
        Self { q, scales, out_features, in_features }
    }

    /// The row-major f32 weight, `q * scale` (f32).
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.q.len()];
        if self.in_features > 0 {
            out.par_chunks_mut(self.in_features)
                .zip(self.q.par_chunks(self.in_features))
                .zip(self.scales.par_iter())
                .for_each(|((o, q), &s)| {
                    for (o, &c) in o.iter_mut().zip(q) {
                        *o = c as f32 * s;
                    }
                });
        }
        out
    }

    /// Bytes this weight occupies; equals [`super::Precision::weight_bytes`] for `Int8`.
    pub fn storage_bytes(&self) -> u64 {
        (self.q.len() + 4 * self.scales.len()) as u64
    }

    /// Device tensors for [`dequantize_tensor`]: the codes as `U8` `[out, in]` holding
    /// `q + 128` (candle has no i8 dtype; the offset keeps one byte per weight), and the scales
    /// as `F32` `[out, 1]`, ready to broadcast over a row.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let codes: Vec<u8> = self.q.iter().map(|&c| (c as i16 + CODE_OFFSET) as u8).collect();
        let codes = Tensor::from_vec(codes, (self.out_features, self.in_features), device)?;
        let scales = Tensor::from_slice(&self.scales, (self.out_features, 1), device)?;
        Ok((codes, scales))
    }
}

/// Rebuild the `[out, in]` weight in `dtype` from [`Int8Weight::to_tensors`]' output with candle
/// ops only, so the same code runs on every device.
///
/// `(code - 128) * scale` is computed in f32 and cast last, so the F32 result equals
/// [`Int8Weight::dequantize`] bit for bit.
pub fn dequantize_tensor(codes: &Tensor, scales: &Tensor, dtype: DType) -> Result<Tensor> {
    let (out_features, _) = codes.dims2()?;
    if codes.dtype() != DType::U8 {
        candle_core::bail!("int8: codes must be U8 (q + 128), got {:?}", codes.dtype());
    }
    if scales.dtype() != DType::F32 || scales.elem_count() != out_features {
        candle_core::bail!(
            "int8: scales must be {out_features} F32 values, got {:?} {:?}",
            scales.dtype(),
            scales.shape()
        );
    }
    codes
        .to_dtype(DType::F32)?
        .affine(1.0, -(CODE_OFFSET as f64))?
        .broadcast_mul(&scales.reshape((out_features, 1))?)?
        .to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Precision;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    use serde_json::Value;

    const FIXTURE: &str = include_str!("../../tests/fixtures/nf4_golden.json");

    fn f32s(v: &Value) -> Vec<f32> {
        v.as_array().expect("array").iter().map(|b| f32::from_bits(b.as_u64().expect("u32 bits") as u32)).collect()
    }

    fn random(o: usize, i: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let d = Normal::new(0.0f32, 0.05).unwrap();
        (0..o * i).map(|_| d.sample(&mut rng)).collect()
    }

    #[test]
    fn golden_int8_matches_reference() {
        let fx: Value = serde_json::from_str(FIXTURE).unwrap();
        let c = &fx["int8"];
        let shape: Vec<usize> = c["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let w = f32s(&c["input_bits"]);
        let q = Int8Weight::quantize(&w, shape[0], shape[1]);
        let expected: Vec<i8> = c["q"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i8).collect();
        assert_eq!(q.q, expected);
        let sb: Vec<u32> = q.scales.iter().map(|s| s.to_bits()).collect();
        let eb: Vec<u32> = f32s(&c["scales_bits"]).iter().map(|s| s.to_bits()).collect();
        assert_eq!(sb, eb);
    }

    #[test]
    fn scales_are_row_absmax_over_127_and_rounding_is_half_away() {
        let (o, i) = (7, 50);
        let mut w = random(o, i, 1);
        w[2 * i..3 * i].fill(0.0);
        // row 4: absmax 127 makes the scale exactly 1, so w/scale is w itself
        w[4 * i] = -127.0;
        w[4 * i + 1..4 * i + 5].copy_from_slice(&[2.5, -2.5, 0.5, -0.5]);
        let q = Int8Weight::quantize(&w, o, i);
        for r in 0..o {
            let absmax = w[r * i..(r + 1) * i].iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(q.scales[r], absmax / 127.0);
            let row = &q.q[r * i..(r + 1) * i];
            assert!(row.iter().all(|&c| c >= -127), "never -128");
            if absmax > 0.0 {
                assert_eq!(row.iter().map(|c| c.unsigned_abs()).max(), Some(127));
            }
        }
        assert_eq!(q.scales[2], 0.0);
        assert!(q.q[2 * i..3 * i].iter().all(|&c| c == 0));
        assert!(q.dequantize().iter().all(|v| v.is_finite()));
        assert_eq!(&q.q[4 * i..4 * i + 5], &[-127, 3, -3, 1, -1]);
    }

    #[test]
    fn tensor_dequantize_equals_host_exactly() {
        for (o, i) in [(576usize, 1536usize), (64, 100), (3, 33)] {
            let q = Int8Weight::quantize(&random(o, i, 2), o, i);
            let (codes, scales) = q.to_tensors(&Device::Cpu).unwrap();
            let t: Vec<f32> =
                dequantize_tensor(&codes, &scales, DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let host = q.dequantize();
            assert!(t.iter().zip(&host).all(|(a, b)| a.to_bits() == b.to_bits()), "{o}×{i}");
        }
    }

    #[test]
    fn tensor_matmul_matches_f64_host() {
        let (o, i, rows) = (96usize, 200usize, 5usize);
        let q = Int8Weight::quantize(&random(o, i, 3), o, i);
        let x = random(rows, i, 4);
        let (codes, scales) = q.to_tensors(&Device::Cpu).unwrap();
        let wt = dequantize_tensor(&codes, &scales, DType::F32).unwrap();
        let xt = Tensor::from_slice(&x, (rows, i), &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = xt.matmul(&wt.t().unwrap()).unwrap().to_vec2().unwrap();
        for (r, yrow) in y.iter().enumerate() {
            let xr = &x[r * i..(r + 1) * i];
            for (c, &got) in yrow.iter().enumerate() {
                let wrow = &q.q[c * i..(c + 1) * i];
                let (mut exact, mut mag) = (0f64, 0f64);
                for (&xv, &qv) in xr.iter().zip(wrow) {
                    let p = xv as f64 * (qv as f64 * q.scales[c] as f64);
                    exact += p;
                    mag += p.abs();
                }
                let err = (got as f64 - exact).abs();
                assert!(err <= 1e-5 * mag, "[{r},{c}]: {got} vs {exact} (|x||w| = {mag})");
            }
        }
    }

    #[test]
    fn storage_bytes_match_precision() {
        for (o, i) in [(4usize, 33usize), (576, 1536), (1, 1)] {
            let q = Int8Weight::quantize(&random(o, i, 5), o, i);
            assert_eq!(q.storage_bytes(), Precision::Int8.weight_bytes(o, i));
        }
        let empty = Int8Weight::quantize(&[], 3, 0);
        assert_eq!(empty.scales, vec![0.0; 3]);
        assert!(empty.dequantize().is_empty());
    }

    #[test]
    fn tensor_dequantize_rejects_bad_inputs() {
        let q = Int8Weight::quantize(&random(4, 8, 6), 4, 8);
        let (codes, scales) = q.to_tensors(&Device::Cpu).unwrap();
        assert!(dequantize_tensor(&scales, &scales, DType::F32).is_err());
        let short = scales.narrow(0, 0, 3).unwrap();
        assert!(dequantize_tensor(&codes, &short, DType::F32).is_err());
    }
}
