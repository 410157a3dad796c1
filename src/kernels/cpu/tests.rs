//! Every kernel against an f64 product of the plain dequantized weight, on random inputs of real
//! layer shapes, for every instruction set this CPU has, on both the decode and the prefill path.

use super::*;
use crate::quant::{int8::Int8Weight, nf4::Nf4Weight};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// A weight in every stored format, with the f32 values each format really holds.
struct Formats {
    f32: Vec<f32>,
    f16: Vec<f16>,
    bf16: Vec<bf16>,
    int8: (Vec<u8>, Vec<f32>),
    nf4: (Vec<u8>, Vec<f32>),
}

impl Formats {
    fn new(n: usize, k: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(0f32, 0.02).unwrap();
        let w: Vec<f32> = (0..n * k).map(|_| normal.sample(&mut rng)).collect();
        let q8 = Int8Weight::quantize(&w, n, k);
        let codes = q8.q.iter().map(|&q| (q as i16 + 128) as u8).collect();
        let q4 = Nf4Weight::quantize(&w, n, k, false);
        Self {
            f16: w.iter().map(|&v| f16::from_f32(v)).collect(),
            bf16: w.iter().map(|&v| bf16::from_f32(v)).collect(),
            int8: (codes, q8.scales.clone()),
            nf4: (q4.packed.clone(), q4.block_absmax()),
            f32: w,
        }
    }

    /// Each format's view and its plain dequantization (the reference weights).
    fn cases(&self, n: usize, k: usize) -> Vec<(&'static str, WeightView<'_>, Vec<f32>)> {
        let q8 = Int8Weight::quantize(&self.f32, n, k);
        let q4 = Nf4Weight::quantize(&self.f32, n, k, false);
        vec![
            ("f32", WeightView::F32(&self.f32), self.f32.clone()),
            ("f16", WeightView::F16(&self.f16), self.f16.iter().map(|v| v.to_f32()).collect()),
            ("bf16", WeightView::Bf16(&self.bf16), self.bf16.iter().map(|v| v.to_f32()).collect()),
            ("int8", WeightView::Int8 { codes: &self.int8.0, scales: &self.int8.1 }, q8.dequantize()),
            ("nf4", WeightView::Nf4 { packed: &self.nf4.0, absmax: &self.nf4.1 }, q4.dequantize()),
        ]
    }
}

/// `out[r, o] = Σ_j xs[r, j]·w[o, j]` in f64, and the matching `Σ_j |xs·w|` that scales the
/// tolerance (f32 summation error grows with the sum of magnitudes, not with the result).
fn reference(xs: &[f32], m: usize, k: usize, w: &[f32], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0f64; m * n];
    let mut mag = vec![0f64; m * n];
    for r in 0..m {
        for o in 0..n {
            let (x, wr) = (&xs[r * k..(r + 1) * k], &w[o * k..(o + 1) * k]);
            for (a, b) in x.iter().zip(wr) {
                let p = *a as f64 * *b as f64;
                out[r * n + o] += p;
                mag[r * n + o] += p.abs();
            }
        }
    }
    (out, mag)
}

/// Stated tolerance: |Δ| ≤ 1e-5 · Σ|x·w| per output, about 170 f32 ulps of the magnitude sum.
const REL_TOL: f64 = 1e-5;

fn check(shape: (usize, usize), rows: &[usize], seed: u64) {
    let (n, k) = shape;
    let formats = Formats::new(n, k, seed);
    let mut rng = StdRng::seed_from_u64(seed + 1);
    for (name, view, plain) in formats.cases(n, k) {
        for &m in rows {
            let xs: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1f32..1f32)).collect();
            let (want, mag) = reference(&xs, m, k, &plain, n);
            for isa in Isa::supported() {
                let mut got = vec![f32::NAN; m * n];
                matmul_with(isa, &xs, m, k, &view, n, &mut got);
                let worst = got
                    .iter()
                    .zip(want.iter().zip(&mag))
                    .map(|(g, (w, s))| (*g as f64 - w).abs() / (s + 1e-30))
                    .fold(0f64, f64::max);
                assert!(worst <= REL_TOL, "{name} {n}x{k} m={m} {isa:?}: error {worst:.2e} of Σ|x·w| > {REL_TOL:.0e}");
            }
        }
    }
}

#[test]
fn smollm_ffn_up_all_paths() {
    // 1..=8 rows take the decode kernels (groups of 4 plus a remainder), 9 and 40 the tiled GEMM.
    check((1536, 576), &[1, 2, 3, 4, 5, 8, 9, 40], 1);
}

#[test]
fn smollm_ffn_down_and_attention() {
    check((576, 1536), &[1, 7, 33], 2);
    check((192, 576), &[1, 65], 3);
}

#[test]
fn llama_3b_ffn() {
    check((8192, 3072), &[1, 9], 4);
    check((3072, 8192), &[1, 9], 5);
}

#[test]
fn llama_8b_ffn() {
    check((14336, 4096), &[1, 9], 6);
}

#[test]
fn odd_k_takes_the_portable_path() {
    // k = 48 is no multiple of 32: dense and int8 must still be right (NF4 needs k % 64 == 0).
    let (n, k) = (40, 48);
    let f = Formats::new(n, k, 7);
    let xs: Vec<f32> = (0..3 * k).map(|i| (i as f32 * 0.37).sin()).collect();
    for (name, view, plain) in f.cases(n, k).into_iter().filter(|c| c.0 != "nf4") {
        let (want, mag) = reference(&xs, 3, k, &plain, n);
        let mut got = vec![0f32; 3 * n];
        matmul(&xs, 3, k, &view, n, &mut got);
        for ((g, w), s) in got.iter().zip(&want).zip(&mag) {
            assert!((*g as f64 - w).abs() <= REL_TOL * s, "{name}: {g} vs {w}");
        }
    }
}

#[test]
fn nf4_needs_whole_blocks() {
    let packed = vec![0u8; 40 * 48 / 2];
    let absmax = vec![1f32; 40 * 48 / 64];
    assert!(WeightView::Nf4 { packed: &packed, absmax: &absmax }.check(40, 48).is_err());
}
