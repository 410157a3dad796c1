//! QLoRA double quantization: the NF4 block absmax values themselves stored in 8 bits.
//!
//! This is bitsandbytes' `quantize_4bit(..., compress_statistics=True)`: `offset = mean(absmax)`,
//! then `quantize_blockwise(absmax - offset, blocksize=256)` with the signed 8-bit "dynamic" map
//! (`create_dynamic_map(signed=True)`), computed as the CUDA kernel `kQuantizeBlockwise` with
//! `dQuantize<0>` does. Dequantized absmax = `code[q] * scale[block] + offset`, two float32
//! operations in that order, as `dequantize_blockwise` followed by `absmax += offset`.
//!
//! Checked bit for bit against bitsandbytes 0.50.2 on CUDA (see `tools/reference/nf4_golden.py`),
//! with one documented exception: the offset is the correctly rounded mean (float64 sum / n,
//! rounded once), while torch computes a float32 sum whose order depends on the device, so the
//! two may differ by one float32 ulp.

/// Values per double-quantization block: one f32 scale per 256 NF4 blocks (16384 weights).
pub const DQ_BLOCKSIZE: usize = 256;

/// bitsandbytes' `create_dynamic_map(signed=True)` (max_exponent_bits 7, 8 bits), sorted.
///
/// Kept as literals rather than computed at run time because its bits depend on how torch
/// rounds `linspace` (with a fused multiply-add) and must never drift; the test
/// `dynamic_map_is_recomputable` rebuilds it from the definition and the golden fixture pins it.
pub const DYNAMIC_MAP_SIGNED: [f32; 256] = [
    -0.99296874,
    -0.9789063,
    -0.96484375,
    -0.9507812,
    -0.93671876,
    -0.92265624,
    -0.9085938,
    -0.89453125,
    -0.8804687,
    -0.86640626,
    -0.85234374,
    -0.8382813,
    -0.82421875,
    -0.8101562,
    -0.79609376,
    -0.78203124,
    -0.7679688,
    -0.75390625,
    -0.7398437,
    -0.72578126,
    -0.7117188,
    -0.6976563,
    -0.68359375,
    -0.6695312,
    -0.65546876,
    -0.6414063,
    -0.6273438,
    -0.61328125,
    -0.5992187,
    -0.58515626,
    -0.5710938,
    -0.5570313,
    -0.54296875,
    -0.5289062,
    -0.5148437,
    -0.50078124,
    -0.4867187,
    -0.47265625,
    -0.45859373,
    -0.44453126,
    -0.43046874,
    -0.41640624,
    -0.40234375,
    -0.38828123,
    -0.37421876,
    -0.36015624,
    -0.34609374,
    -0.33203125,
    -0.31796873,
    -0.30390626,
    -0.28984374,
    -0.27578127,
    -0.26171875,
    -0.24765624,
    -0.23359375,
    -0.21953125,
    -0.20546874,
    -0.19140625,
    -0.17734376,
    -0.16328125,
    -0.14921875,
    -0.13515624,
    -0.12109375,
    -0.107031256,
    -0.09859375,
    -0.09578126,
    -0.092968754,
    -0.09015625,
    -0.08734375,
    -0.08453125,
    -0.08171876,
    -0.07890625,
    -0.07609375,
    -0.07328125,
    -0.070468746,
    -0.067656256,
    -0.06484375,
    -0.06203125,
    -0.059218753,
    -0.05640625,
    -0.05359375,
    -0.05078125,
    -0.04796875,
    -0.04515625,
    -0.042343747,
    -0.03953125,
    -0.036718752,
    -0.03390625,
    -0.03109375,
    -0.028281251,
    -0.02546875,
    -0.02265625,
    -0.019843752,
    -0.01703125,
    -0.01421875,
    -0.01140625,
    -0.00971875,
    -0.009156249,
    -0.00859375,
    -0.00803125,
    -0.00746875,
    -0.00690625,
    -0.00634375,
    -0.00578125,
    -0.0052187503,
    -0.0046562497,
    -0.00409375,
    -0.0035312497,
    -0.00296875,
    -0.00240625,
    -0.00184375,
    -0.0012812499,
    -0.0009437501,
    -0.00083125,
    -0.00071875006,
    -0.0006062501,
    -0.00049375003,
    -0.00038125002,
    -0.00026875004,
    -0.00015625001,
    -8.875e-05,
    -6.625e-05,
    -4.375e-05,
    -2.1249998e-05,
    -7.75e-06,
    -3.2500002e-06,
    -5.5000004e-07,
    0.0,
    5.5000004e-07,
    3.2500002e-06,
    7.75e-06,
    2.1249998e-05,
    4.375e-05,
    6.625e-05,
    8.875e-05,
    0.00015625001,
    0.00026875004,
    0.00038125002,
    0.00049375003,
    0.0006062501,
    0.00071875006,
    0.00083125,
    0.0009437501,
    0.0012812499,
    0.00184375,
    0.00240625,
    0.00296875,
    0.0035312497,
    0.00409375,
    0.0046562497,
    0.0052187503,
    0.00578125,
    0.00634375,
    0.00690625,
    0.00746875,
    0.00803125,
    0.00859375,
    0.009156249,
    0.00971875,
    0.01140625,
    0.01421875,
    0.01703125,
    0.019843752,
    0.02265625,
    0.02546875,
    0.028281251,
    0.03109375,
    0.03390625,
    0.036718752,
    0.03953125,
    0.042343747,
    0.04515625,
    0.04796875,
    0.05078125,
    0.05359375,
    0.05640625,
    0.059218753,
    0.06203125,
    0.06484375,
    0.067656256,
    0.070468746,
    0.07328125,
    0.07609375,
    0.07890625,
    0.08171876,
    0.08453125,
    0.08734375,
    0.09015625,
    0.092968754,
    0.09578126,
    0.09859375,
    0.107031256,
    0.12109375,
    0.13515624,
    0.14921875,
    0.16328125,
    0.17734376,
    0.19140625,
    0.20546874,
    0.21953125,
    0.23359375,
    0.24765624,
    0.26171875,
    0.27578127,
    0.28984374,
    0.30390626,
    0.31796873,
    0.33203125,
    0.34609374,
    0.36015624,
    0.37421876,
    0.38828123,
    0.40234375,
    0.41640624,
    0.43046874,
    0.44453126,
    0.45859373,
    0.47265625,
    0.4867187,
    0.50078124,
    0.5148437,
    0.5289062,
    0.54296875,
    0.5570313,
    0.5710938,
    0.58515626,
    0.5992187,
    0.61328125,
    0.6273438,
    0.6414063,
    0.65546876,
    0.6695312,
    0.68359375,
    0.6976563,
    0.7117188,
    0.72578126,
    0.7398437,
    0.75390625,
    0.7679688,
    0.78203124,
    0.79609376,
    0.8101562,
    0.82421875,
    0.8382813,
    0.85234374,
    0.86640626,
    0.8804687,
    0.89453125,
    0.9085938,
    0.92265624,
    0.93671876,
    0.9507812,
    0.96484375,
    0.9789063,
    0.99296874,
    1.0,
];

/// Rebuild [`DYNAMIC_MAP_SIGNED`] from bitsandbytes' definition, to document where it comes from.
///
/// For `i` in 0..7: the `2^i` means of adjacent points of a float32 `linspace(0.1, 1, 2^i + 1)`,
/// times float32 `10^(i-6)`, with both signs; then 0 and 1; sorted. torch's CPU linspace computes
/// `start + step * k` (first half) and `end - step * (steps - 1 - k)` (second half) with one
/// rounding (it is compiled with FMA contraction), which `mul_add` reproduces.
pub fn create_dynamic_map_signed() -> [f32; 256] {
    let mut data: Vec<f32> = Vec::with_capacity(256);
    for i in 0..7usize {
        let steps = (1usize << i) + 1;
        let (start, end) = (0.1f32, 1.0f32);
        let step = (end - start) / (steps - 1) as f32;
        let half = steps / 2;
        let b: Vec<f32> =
            (0..steps)
                .map(|k| {
                    if k < half {
                        step.mul_add(k as f32, start)
                    } else {
                        (-step).mul_add((steps - 1 - k) as f32, end)
                    }
                })
                .collect();
        // Python's float `10 ** (i - 6)`, rounded to f32 by torch when it multiplies.
        let scale = [1e-6f64, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0][i] as f32;
        for w in b.windows(2) {
            let mean = (w[0] + w[1]) / 2.0;
            data.push(scale * mean);
            data.push(-(scale * mean));
        }
    }
    data.push(0.0);
    data.push(1.0);
    data.sort_by(f32::total_cmp);
    let mut out = [0f32; 256];
    out.copy_from_slice(&data);
    out
}

/// Index of `x` (already divided by its block absmax) in a sorted 256-entry code, as
/// bitsandbytes' `dQuantize<0>` finds it: a 7-step binary search from index 127, then a midpoint
/// test `(a + b) * 0.5` against the neighbour on the side of `x`. Exact ties stay on the searched
/// index; NaN (an all-zero block: `0 * (1/0)`) maps to index 0, as on CUDA.
pub fn quantize_dynamic(code: &[f32; 256], x: f32) -> u8 {
    let mut pivot = 127usize;
    let mut upper_pivot = 255usize;
    let mut lower_pivot = 0usize;
    let mut lower = -1.0f32;
    let mut upper = 1.0f32;
    let mut val = code[pivot];
    let mut i = 64usize;
    while i > 0 {
        if x > val {
            lower_pivot = pivot;
            lower = val;
            pivot += i;
        } else {
            upper_pivot = pivot;
            upper = val;
            pivot -= i;
        }
        val = code[pivot];
        i >>= 1;
    }
    if upper_pivot == 255 {
        upper = code[upper_pivot];
    }
    if lower_pivot == 0 {
        lower = code[lower_pivot];
    }
    let picked = if x > val {
        if x > (upper + val) * 0.5 {
            upper_pivot
        } else {
            pivot
        }
    } else if x < (lower + val) * 0.5 {
        lower_pivot
    } else {
        pivot
    };
    picked as u8
}

/// bitsandbytes `quantize_blockwise` with an explicit code: per block of `blocksize`, the f32
/// absmax and each value's index for `x * (1 / absmax)`. Returns (codes, absmax per block).
///
/// # Panics
/// If `blocksize` is 0.
pub fn quantize_blockwise(values: &[f32], code: &[f32; 256], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    assert!(blocksize > 0, "blocksize must be positive");
    let mut q = vec![0u8; values.len()];
    let mut absmax = vec![0f32; values.len().div_ceil(blocksize)];
    for ((block, out), am) in values.chunks(blocksize).zip(q.chunks_mut(blocksize)).zip(absmax.iter_mut()) {
        let m = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        *am = m;
        let inv = 1.0f32 / m;
        for (o, &v) in out.iter_mut().zip(block) {
            *o = quantize_dynamic(code, v * inv);
        }
    }
    (q, absmax)
}

/// Inverse of [`quantize_blockwise`]: `code[q] * absmax[block]` in f32.
pub fn dequantize_blockwise(q: &[u8], absmax: &[f32], code: &[f32; 256], blocksize: usize) -> Vec<f32> {
    q.iter().enumerate().map(|(i, &c)| code[c as usize] * absmax[i / blocksize]).collect()
}

/// NF4 absmax values compressed to one byte each (QLoRA double quantization).
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuantized {
    /// One dynamic-map index per NF4 block.
    pub q: Vec<u8>,
    /// One f32 absmax of `absmax - offset` per [`DQ_BLOCKSIZE`] NF4 blocks.
    pub scales: Vec<f32>,
    /// Mean of the original absmax values, removed before quantizing so the signed map is used fully.
    pub offset: f32,
}

impl DoubleQuantized {
    /// Quantize NF4 block absmax values the way `quantize_4bit(compress_statistics=True)` does.
    ///
    /// The offset is the correctly rounded mean (see the module docs for why it can differ from
    /// torch's by one ulp). An empty input gives offset 0 rather than NaN.
    pub fn quantize(absmax: &[f32]) -> Self {
        let offset = if absmax.is_empty() {
            0.0
        } else {
            (absmax.iter().map(|&a| a as f64).sum::<f64>() / absmax.len() as f64) as f32
        };
        let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
        let (q, scales) = quantize_blockwise(&centred, &DYNAMIC_MAP_SIGNED, DQ_BLOCKSIZE);
        Self { q, scales, offset }
    }

    /// The absmax values as bitsandbytes' `dequantize_4bit` sees them: `code[q] * scale + offset`.
    pub fn dequantize(&self) -> Vec<f32> {
        dequantize_blockwise(&self.q, &self.scales, &DYNAMIC_MAP_SIGNED, DQ_BLOCKSIZE)
            .into_iter()
            .map(|a| a + self.offset)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_map_is_recomputable() {
        let computed = create_dynamic_map_signed();
        for (i, (a, b)) in computed.iter().zip(DYNAMIC_MAP_SIGNED.iter()).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "entry {i}: {a} vs {b}");
        }
        assert_eq!(DYNAMIC_MAP_SIGNED[127], 0.0);
        assert_eq!(DYNAMIC_MAP_SIGNED[255], 1.0);
        assert!(DYNAMIC_MAP_SIGNED.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn dynamic_quantization_picks_nearest_and_handles_nan() {
        let code = &DYNAMIC_MAP_SIGNED;
        for (i, &c) in code.iter().enumerate() {
            assert_eq!(quantize_dynamic(code, c) as usize, i, "exact code value {c}");
        }
        // away from midpoints the search is plain nearest-neighbour
        for k in 0..2001 {
            let x = -1.0 + k as f32 * 0.001;
            let got = code[quantize_dynamic(code, x) as usize];
            let best = code.iter().map(|&c| (c - x).abs()).fold(f32::INFINITY, f32::min);
            assert!(((got - x).abs() - best).abs() <= 1e-7, "x={x} got {got} best dist {best}");
        }
        assert_eq!(quantize_dynamic(code, f32::NAN), 0);
    }

    #[test]
    fn double_quant_round_trip_is_close() {
        let absmax: Vec<f32> = (0..700).map(|i| 0.01 + 0.002 * ((i * 37) % 101) as f32).collect();
        let dq = DoubleQuantized::quantize(&absmax);
        assert_eq!(dq.q.len(), 700);
        assert_eq!(dq.scales.len(), 3);
        for (a, b) in absmax.iter().zip(dq.dequantize()) {
            // the dynamic map's widest gap near 1 is 0.0141, so the error is below 0.71% of the scale
            assert!((a - b).abs() <= 0.0071 * dq.scales.iter().fold(0f32, |m, s| m.max(*s)) + 1e-7);
        }
        assert_eq!(DoubleQuantized::quantize(&[]).offset, 0.0);
    }
}
