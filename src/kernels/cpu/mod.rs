//! CPU linear kernels: `out = xs·Wᵀ` read straight from the stored format.
//!
//! Decode (at most [`GEMV_MAX_ROWS`] rows of `xs`) never materializes the dequantized weight: each
//! output row decodes its weight row in registers and multiplies it into every `xs` row at once, the
//! output rows split over rayon. Prefill dequantizes a tile of weight rows into a buffer that stays in
//! the L2 cache and hands it to the `gemm` crate's f32 GEMM. AVX-512, AVX2+FMA+F16C or portable code is
//! picked once at run time.

mod avx2;
mod avx512;
mod portable;
#[cfg(test)]
mod tests;

use gemm::Parallelism;
use half::{bf16, f16};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Decode path up to this many `xs` rows; a tiled GEMM above.
pub const GEMV_MAX_ROWS: usize = 8;
/// NF4 block length (elements sharing one absmax) the kernels assume.
pub const NF4_BLOCK: usize = 64;
/// Weight rows per prefill tile: 64 rows × 8192 inputs × 4 B = 2 MiB at the largest shape.
const TILE_ROWS: usize = 64;
/// Output rows per rayon task in the decode path: enough work to amortize the hand-off.
const GEMV_CHUNK: usize = 32;

/// A weight matrix `[n, k]` as stored, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum WeightView<'a> {
    /// Dense f32, row-major.
    F32(&'a [f32]),
    /// Dense f16, row-major.
    F16(&'a [f16]),
    /// Dense bf16, row-major.
    Bf16(&'a [bf16]),
    /// `codes[o·k + j] = q + 128`, value `q·scales[o]`.
    Int8 {
        /// `[n, k]` codes, q + 128.
        codes: &'a [u8],
        /// `[n]` per-row scales.
        scales: &'a [f32],
    },
    /// bitsandbytes packing: byte `i` holds elements `2i` (high nibble) and `2i + 1`; `absmax` per
    /// block of [`NF4_BLOCK`] consecutive elements. Needs `k % NF4_BLOCK == 0`.
    Nf4 {
        /// `[n·k / 2]` packed code pairs.
        packed: &'a [u8],
        /// `[n·k / NF4_BLOCK]` block scales.
        absmax: &'a [f32],
    },
}

/// The instruction set the kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F/BW (plus AVX2, FMA, F16C).
    Avx512,
    /// AVX2, FMA and F16C.
    Avx2,
    /// Plain Rust, any CPU.
    Portable,
}

/// The best instruction set of this CPU (cached); `MINILAB_ISA=avx2|portable` caps it, for tests and
/// comparisons.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = std::env::var("MINILAB_ISA").unwrap_or_default();
        detect().min_with(match cap.as_str() {
            "portable" => Isa::Portable,
            "avx2" => Isa::Avx2,
            _ => Isa::Avx512,
        })
    })
}

impl Isa {
    /// The instruction sets this CPU can run, best last.
    pub fn supported() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().filter(|i| i.rank() <= detect().rank()).collect()
    }

    fn rank(self) -> u8 {
        match self {
            Isa::Portable => 0,
            Isa::Avx2 => 1,
            Isa::Avx512 => 2,
        }
    }

    fn min_with(self, other: Isa) -> Isa {
        if other.rank() < self.rank() {
            other
        } else {
            self
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Isa {
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
    if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
        Isa::Avx512
    } else if avx2 {
        Isa::Avx2
    } else {
        Isa::Portable
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Isa {
    Isa::Portable
}

impl WeightView<'_> {
    /// Checks the slices against `[n, k]`; the kernels index without bounds checks.
    pub fn check(&self, n: usize, k: usize) -> Result<(), String> {
        let len = n * k;
        let ok = match self {
            WeightView::F32(w) => w.len() == len,
            WeightView::F16(w) => w.len() == len,
            WeightView::Bf16(w) => w.len() == len,
            WeightView::Int8 { codes, scales } => codes.len() == len && scales.len() == n,
            WeightView::Nf4 { packed, absmax } => {
                k.is_multiple_of(NF4_BLOCK) && packed.len() == len / 2 && absmax.len() == len / NF4_BLOCK
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!("weight storage does not match [{n}, {k}] for this format"))
        }
    }

    /// Weight row `o` decoded to f32 into `dst` (`k` values), in kernel order: NF4 rows come out
    /// permuted as by [`portable::nf4_permute`], which the caller applies to `xs` too.
    fn decode_row(&self, isa: Isa, o: usize, k: usize, dst: &mut [f32]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2 if k.is_multiple_of(32) => unsafe { avx2::decode_row(self, o, k, dst) },
            _ => {
                portable::decode_row(self, o, k, dst);
                if matches!(self, WeightView::Nf4 { .. }) {
                    let permuted = portable::nf4_permute(dst, 1, k);
                    dst.copy_from_slice(&permuted);
                }
            }
        }
    }
}

/// `out[m, n] = xs[m, k] · W[n, k]ᵀ`, every value accumulated in f32.
pub fn matmul(xs: &[f32], m: usize, k: usize, w: &WeightView, n: usize, out: &mut [f32]) {
    matmul_with(isa(), xs, m, k, w, n, out)
}

/// [`matmul`] with a given instruction set, which this CPU must have (see [`Isa::supported`]).
pub fn matmul_with(isa: Isa, xs: &[f32], m: usize, k: usize, w: &WeightView, n: usize, out: &mut [f32]) {
    assert!(isa.rank() <= detect().rank(), "{isa:?} is not available on this CPU");
    assert_eq!(xs.len(), m * k, "xs is not [m, k]");
    assert_eq!(out.len(), m * n, "out is not [m, n]");
    w.check(n, k).expect("weight");
    if m == 0 || n == 0 {
        return;
    }
    // NF4 kernels decode a packed chunk as its high nibbles (even inputs) then its low nibbles (odd
    // inputs): lay xs out to match, once for both paths (a product over k is the same in any order).
    let permuted;
    let xs = if matches!(w, WeightView::Nf4 { .. }) {
        permuted = portable::nf4_permute(xs, m, k);
        &permuted[..]
    } else {
        xs
    };
    if m <= GEMV_MAX_ROWS {
        gemv(isa, xs, m, k, w, n, out);
    } else {
        tiled_gemm(isa, xs, m, k, w, n, out);
    }
}

/// The decode path: every output row reads its weight row once for all `m` rows of `xs` (NF4:
/// permuted).
fn gemv(isa: Isa, xs: &[f32], m: usize, k: usize, w: &WeightView, n: usize, out: &mut [f32]) {
    // out_t: [n, m], each output row's m values contiguous, so that rayon tasks own disjoint slices.
    let mut out_t = if m == 1 { Vec::new() } else { vec![0f32; n * m] };
    let dst: &mut [f32] = if m == 1 { out } else { &mut out_t };
    dst.par_chunks_mut(GEMV_CHUNK * m).enumerate().for_each(|(c, chunk)| {
        for (i, ys) in chunk.chunks_exact_mut(m).enumerate() {
            dot_row(isa, w, c * GEMV_CHUNK + i, xs, m, k, ys);
        }
    });
    if m > 1 {
        // [n, m] → [m, n]
        for (o, ys) in out_t.chunks_exact(m).enumerate() {
            for (r, y) in ys.iter().enumerate() {
                out[r * n + o] = *y;
            }
        }
    }
}

/// `ys[r] = xs[r]·W[o]` for the `m` rows of `xs`.
fn dot_row(isa: Isa, w: &WeightView, o: usize, xs: &[f32], m: usize, k: usize, ys: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let simd_k = if matches!(w, WeightView::Nf4 { .. }) { NF4_BLOCK } else { 32 };
        if isa != Isa::Portable && k.is_multiple_of(simd_k) {
            // Groups of up to four xs rows share one pass over the weight row.
            let mut r = 0;
            while r < m {
                let g = (m - r).min(4);
                let xs = &xs[r * k..(r + g) * k];
                let ys = &mut ys[r..r + g];
                unsafe {
                    match (isa, g) {
                        (Isa::Avx512, 1) => avx512::dot_row::<1>(w, o, xs, k, ys),
                        (Isa::Avx512, 2) => avx512::dot_row::<2>(w, o, xs, k, ys),
                        (Isa::Avx512, 3) => avx512::dot_row::<3>(w, o, xs, k, ys),
                        (Isa::Avx512, _) => avx512::dot_row::<4>(w, o, xs, k, ys),
                        (_, 1) => avx2::dot_row::<1>(w, o, xs, k, ys),
                        (_, 2) => avx2::dot_row::<2>(w, o, xs, k, ys),
                        (_, 3) => avx2::dot_row::<3>(w, o, xs, k, ys),
                        _ => avx2::dot_row::<4>(w, o, xs, k, ys),
                    }
                }
                r += g;
            }
            return;
        }
    }
    let _ = isa;
    portable::dot_row(w, o, xs, m, k, ys);
}

/// The prefill path: weight tiles of [`TILE_ROWS`] rows decoded to f32 in kernel order (NF4: permuted,
/// like `xs`), each multiplied by all of `xs` with `gemm`; tiles run in parallel and write disjoint
/// columns of `out`.
fn tiled_gemm(isa: Isa, xs: &[f32], m: usize, k: usize, w: &WeightView, n: usize, out: &mut [f32]) {
    if let WeightView::F32(w) = w {
        // Already f32: no decode, let gemm pack and parallelize the whole product.
        let threads = rayon::current_num_threads();
        unsafe { gemm_f32((m, n, k), xs, w, out.as_mut_ptr(), n, Parallelism::Rayon(threads)) };
        return;
    }
    let out_ptr = SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(TILE_ROWS)).into_par_iter().for_each_init(
        || vec![0f32; TILE_ROWS * k],
        |tile, t| {
            let (o0, rows) = (t * TILE_ROWS, TILE_ROWS.min(n - t * TILE_ROWS));
            for i in 0..rows {
                w.decode_row(isa, o0 + i, k, &mut tile[i * k..(i + 1) * k]);
            }
            // Safety: tile t writes only columns o0..o0 + rows of out, which no other tile touches.
            let dst = out_ptr;
            unsafe { gemm_f32((m, rows, k), xs, &tile[..rows * k], dst.0.add(o0), n, Parallelism::None) };
        },
    );
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `dst[m, n] (row stride ld) = xs[m, k] · w[n, k]ᵀ`, with `mnk = (m, n, k)`.
unsafe fn gemm_f32(mnk: (usize, usize, usize), xs: &[f32], w: &[f32], dst: *mut f32, ld: usize, par: Parallelism) {
    let (m, n, k) = mnk;
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        ld as isize,
        false,
        xs.as_ptr(),
        1,
        k as isize,
        // wᵀ: element (j, o) at w[o·k + j]
        w.as_ptr(),
        k as isize,
        1,
        0.0,
        1.0,
        false,
        false,
        false,
        par,
    )
}
