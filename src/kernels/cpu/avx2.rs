//! AVX2 + FMA + F16C kernels. Callers guarantee the CPU has those features, `k % 32 == 0` (NF4:
//! `k % 64 == 0`) and slices of the checked sizes.
#![cfg(target_arch = "x86_64")]

use super::{WeightView, NF4_BLOCK};
use crate::quant::nf4::NF4_CODE;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Eight weights starting at element `j` of a dense or int8 row, as f32 (int8 without its scale).
macro_rules! load8 {
    (f32, $p:expr, $j:expr) => {
        _mm256_loadu_ps($p.add($j))
    };
    (f16, $p:expr, $j:expr) => {
        _mm256_cvtph_ps(_mm_loadu_si128($p.add($j) as *const __m128i))
    };
    (bf16, $p:expr, $j:expr) => {
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128($p.add($j) as *const __m128i)), 16))
    };
    // Codes are q + 128: flipping the top bit gives q as i8.
    (u8, $p:expr, $j:expr) => {
        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_xor_si128(
            _mm_loadl_epi64($p.add($j) as *const __m128i),
            _mm_set1_epi8(-128),
        )))
    };
}

/// `ys[r] = Σ_j w[j]·xs[r·k + j]` over a row at `p`, 32 inputs a step, two accumulator chains.
macro_rules! dense_rows {
    ($kind:tt, $M:expr, $p:expr, $x:expr, $k:expr, $ys:expr) => {{
        let (p, x, k) = ($p, $x, $k);
        let mut acc0 = [_mm256_setzero_ps(); $M];
        let mut acc1 = [_mm256_setzero_ps(); $M];
        let mut j = 0;
        while j < k {
            let w0 = load8!($kind, p, j);
            let w1 = load8!($kind, p, j + 8);
            let w2 = load8!($kind, p, j + 16);
            let w3 = load8!($kind, p, j + 24);
            for r in 0..$M {
                let xr = x.add(r * k + j);
                acc0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr), acc0[r]);
                acc1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr.add(8)), acc1[r]);
                acc0[r] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xr.add(16)), acc0[r]);
                acc1[r] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xr.add(24)), acc1[r]);
            }
            j += 32;
        }
        for r in 0..$M {
            $ys[r] = hsum(_mm256_add_ps(acc0[r], acc1[r]));
        }
    }};
}

/// The NF4 code of each 32-bit lane's low nibble: two 8-entry permutes, chosen by bit 3.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nf4_lut(lo: __m256, hi: __m256, idx: __m256i) -> __m256 {
    let a = _mm256_permutevar8x32_ps(lo, idx);
    let b = _mm256_permutevar8x32_ps(hi, idx);
    _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)))
}

/// The 32 NF4 weights of the 16 bytes at `p`, in [`super::portable::nf4_permute`] order:
/// even elements 0..16, even 16..32, odd 0..16, odd 16..32 (unscaled codes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nf4_chunk(p: *const u8, lo: __m256, hi: __m256) -> [__m256; 4] {
    let b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
    let b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(8) as *const __m128i));
    let mask = _mm256_set1_epi32(0x0F);
    [
        nf4_lut(lo, hi, _mm256_srli_epi32(b0, 4)),
        nf4_lut(lo, hi, _mm256_srli_epi32(b1, 4)),
        nf4_lut(lo, hi, _mm256_and_si256(b0, mask)),
        nf4_lut(lo, hi, _mm256_and_si256(b1, mask)),
    ]
}

/// `ys[r] = xs[r]·W[o]` for `M` rows of `xs` (NF4: `xs` permuted).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_row<const M: usize>(w: &WeightView, o: usize, xs: &[f32], k: usize, ys: &mut [f32]) {
    let x = xs.as_ptr();
    match *w {
        WeightView::F32(w) => dense_rows!(f32, M, w.as_ptr().add(o * k), x, k, ys),
        WeightView::F16(w) => dense_rows!(f16, M, w.as_ptr().add(o * k), x, k, ys),
        WeightView::Bf16(w) => dense_rows!(bf16, M, w.as_ptr().add(o * k), x, k, ys),
        WeightView::Int8 { codes, scales } => {
            dense_rows!(u8, M, codes.as_ptr().add(o * k), x, k, ys);
            for y in ys.iter_mut().take(M) {
                *y *= scales[o];
            }
        }
        WeightView::Nf4 { packed, absmax } => nf4_rows::<M>(packed, absmax, o, x, k, ys),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nf4_rows<const M: usize>(packed: &[u8], absmax: &[f32], o: usize, x: *const f32, k: usize, ys: &mut [f32]) {
    let (lo, hi) = (_mm256_loadu_ps(NF4_CODE.as_ptr()), _mm256_loadu_ps(NF4_CODE.as_ptr().add(8)));
    let p = packed.as_ptr().add(o * k / 2);
    let am = absmax.as_ptr().add(o * k / NF4_BLOCK);
    let mut acc = [_mm256_setzero_ps(); M];
    for b in 0..k / NF4_BLOCK {
        let mut b0 = [_mm256_setzero_ps(); M];
        let mut b1 = [_mm256_setzero_ps(); M];
        for c in 0..2 {
            let j = b * NF4_BLOCK + c * 32;
            let ws = nf4_chunk(p.add(j / 2), lo, hi);
            for r in 0..M {
                let xr = x.add(r * k + j);
                b0[r] = _mm256_fmadd_ps(ws[0], _mm256_loadu_ps(xr), b0[r]);
                b1[r] = _mm256_fmadd_ps(ws[1], _mm256_loadu_ps(xr.add(8)), b1[r]);
                b0[r] = _mm256_fmadd_ps(ws[2], _mm256_loadu_ps(xr.add(16)), b0[r]);
                b1[r] = _mm256_fmadd_ps(ws[3], _mm256_loadu_ps(xr.add(24)), b1[r]);
            }
        }
        let scale = _mm256_set1_ps(*am.add(b));
        for r in 0..M {
            acc[r] = _mm256_fmadd_ps(_mm256_add_ps(b0[r], b1[r]), scale, acc[r]);
        }
    }
    for r in 0..M {
        ys[r] = hsum(acc[r]);
    }
}

/// Weight row `o` as f32 into `dst`, in the kernels' order (NF4 permuted), scales applied.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn decode_row(w: &WeightView, o: usize, k: usize, dst: &mut [f32]) {
    let d = dst.as_mut_ptr();
    macro_rules! dense {
        ($kind:tt, $p:expr, $scale:expr) => {{
            let (p, s) = ($p, _mm256_set1_ps($scale));
            for j in (0..k).step_by(8) {
                _mm256_storeu_ps(d.add(j), _mm256_mul_ps(load8!($kind, p, j), s));
            }
        }};
    }
    match *w {
        WeightView::F32(w) => dst.copy_from_slice(&w[o * k..(o + 1) * k]),
        WeightView::F16(w) => dense!(f16, w.as_ptr().add(o * k), 1.0),
        WeightView::Bf16(w) => dense!(bf16, w.as_ptr().add(o * k), 1.0),
        WeightView::Int8 { codes, scales } => dense!(u8, codes.as_ptr().add(o * k), scales[o]),
        WeightView::Nf4 { packed, absmax } => {
            let (lo, hi) = (_mm256_loadu_ps(NF4_CODE.as_ptr()), _mm256_loadu_ps(NF4_CODE.as_ptr().add(8)));
            let p = packed.as_ptr().add(o * k / 2);
            for j in (0..k).step_by(32) {
                let s = _mm256_set1_ps(absmax[(o * k + j) / NF4_BLOCK]);
                for (i, v) in nf4_chunk(p.add(j / 2), lo, hi).into_iter().enumerate() {
                    _mm256_storeu_ps(d.add(j + 8 * i), _mm256_mul_ps(v, s));
                }
            }
        }
    }
}
