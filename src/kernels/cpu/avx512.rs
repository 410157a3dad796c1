//! AVX-512 kernels where they pay: NF4, whose 16-entry codebook is one `vpermps` on 16 lanes. The
//! other formats are memory-bound at decode and use the AVX2 kernels.
#![cfg(target_arch = "x86_64")]

use super::{avx2, WeightView, NF4_BLOCK};
use crate::quant::nf4::NF4_CODE;
use std::arch::x86_64::*;

/// `ys[r] = xs[r]·W[o]` for `M` rows of `xs` (NF4: `xs` permuted).
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_row<const M: usize>(w: &WeightView, o: usize, xs: &[f32], k: usize, ys: &mut [f32]) {
    let WeightView::Nf4 { packed, absmax } = *w else {
        return avx2::dot_row::<M>(w, o, xs, k, ys);
    };
    let table = _mm512_loadu_ps(NF4_CODE.as_ptr());
    let x = xs.as_ptr();
    let p = packed.as_ptr().add(o * k / 2);
    let am = absmax.as_ptr().add(o * k / NF4_BLOCK);
    let mut acc = [_mm512_setzero_ps(); M];
    for b in 0..k / NF4_BLOCK {
        let mut b0 = [_mm512_setzero_ps(); M];
        let mut b1 = [_mm512_setzero_ps(); M];
        for c in 0..2 {
            let j = b * NF4_BLOCK + c * 32;
            // 16 bytes → 16 lanes; vpermps reads only each lane's low 4 bits, so the low nibble
            // needs no mask.
            let bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(j / 2) as *const __m128i));
            let even = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
            let odd = _mm512_permutexvar_ps(bytes, table);
            for r in 0..M {
                let xr = x.add(r * k + j);
                b0[r] = _mm512_fmadd_ps(even, _mm512_loadu_ps(xr), b0[r]);
                b1[r] = _mm512_fmadd_ps(odd, _mm512_loadu_ps(xr.add(16)), b1[r]);
            }
        }
        let scale = _mm512_set1_ps(*am.add(b));
        for r in 0..M {
            acc[r] = _mm512_fmadd_ps(_mm512_add_ps(b0[r], b1[r]), scale, acc[r]);
        }
    }
    for r in 0..M {
        ys[r] = _mm512_reduce_add_ps(acc[r]);
    }
}
