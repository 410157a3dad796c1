//! Plain Rust kernels: any CPU, any `k`; also the layout helpers the SIMD kernels share.

use super::{WeightView, NF4_BLOCK};
use crate::quant::nf4::NF4_CODE;

/// Weight row `o` as f32 into `dst` (`k` values).
pub fn decode_row(w: &WeightView, o: usize, k: usize, dst: &mut [f32]) {
    let row = o * k..(o + 1) * k;
    match w {
        WeightView::F32(w) => dst.copy_from_slice(&w[row]),
        WeightView::F16(w) => dst.iter_mut().zip(&w[row]).for_each(|(d, v)| *d = v.to_f32()),
        WeightView::Bf16(w) => dst.iter_mut().zip(&w[row]).for_each(|(d, v)| *d = v.to_f32()),
        WeightView::Int8 { codes, scales } => {
            let s = scales[o];
            dst.iter_mut().zip(&codes[row]).for_each(|(d, &c)| *d = (c as i32 - 128) as f32 * s);
        }
        WeightView::Nf4 { packed, absmax } => {
            for (j, pair) in dst.chunks_exact_mut(2).enumerate() {
                let flat = o * k + 2 * j;
                let (byte, a) = (packed[flat / 2], absmax[flat / NF4_BLOCK]);
                pair[0] = NF4_CODE[(byte >> 4) as usize] * a;
                pair[1] = NF4_CODE[(byte & 0x0F) as usize] * a;
            }
        }
    }
}

/// `ys[r] = xs[r]·W[o]` for the `m` rows of `xs` (NF4: `xs` laid out by [`nf4_permute`]).
pub fn dot_row(w: &WeightView, o: usize, xs: &[f32], m: usize, k: usize, ys: &mut [f32]) {
    let mut row = vec![0f32; k];
    decode_row(w, o, k, &mut row);
    if matches!(w, WeightView::Nf4 { .. }) {
        row = nf4_permute(&row, 1, k);
    }
    for (r, y) in ys.iter_mut().enumerate().take(m) {
        *y = xs[r * k..(r + 1) * k].iter().zip(&row).map(|(x, w)| x * w).sum();
    }
}

/// Reorders every 32 values of each row as its 16 even-indexed then its 16 odd-indexed values: the
/// order in which the NF4 kernels decode a packed chunk (high nibbles, then low nibbles).
pub fn nf4_permute(xs: &[f32], m: usize, k: usize) -> Vec<f32> {
    debug_assert_eq!(k % 32, 0);
    let mut out = vec![0f32; m * k];
    for (src, dst) in xs.chunks_exact(32).zip(out.chunks_exact_mut(32)) {
        for i in 0..16 {
            dst[i] = src[2 * i];
            dst[16 + i] = src[2 * i + 1];
        }
    }
    out
}
