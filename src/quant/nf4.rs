//! bitsandbytes NF4 (QLoRA's 4-bit NormalFloat), bit for bit.
//!
//! The weight is flattened row-major and cut into blocks of [`NF4_BLOCKSIZE`] values (the last
//! block may be partial). Each block keeps its f32 `absmax`; each value is normalised as
//! `x * (1 / absmax)` (a reciprocal then a multiply, as the CUDA kernel does, not a division) and
//! mapped to one of 16 codes by the thresholds of bitsandbytes' `dQuantizeNF4`. Two codes per
//! byte, the FIRST value in the HIGH nibble (`(q[2i] << 4) | q[2i+1]`).
//!
//! What "bit for bit" means here, checked against bitsandbytes 0.50.2 on CUDA by
//! `tools/reference/nf4_golden.py` and pinned by `tests/fixtures/nf4_golden.json`:
//! - the thresholds are bitsandbytes' decimal literals read as f32 the way a C++/CUDA compiler
//!   reads `0.12f` (rounded once). They are float64 midpoints of float32 codes, so they sit almost
//!   exactly half-way between two f32 values: reading them through f64 (as numpy or torch do)
//!   moves 4 of the 15 by one ulp and flips the code of inputs that land exactly on them;
//! - a value exactly on a threshold takes the lower code (every test is `x > t`);
//! - an all-zero block has absmax 0, `0 * (1/0)` is NaN, every test fails and the code is 0
//!   (the -1.0 entry, which dequantizes to -0.0). bitsandbytes' CPU fallback stores 7 instead;
//! - an odd element count pads the last low nibble with the code of `0 * (1/absmax)`.
//!
//! CUDA bitsandbytes is built with `--use_fast_math`, so its `1/absmax` is an approximate
//! reciprocal; that can only matter for a value within an ulp of a threshold.

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::dq::{DoubleQuantized, DYNAMIC_MAP_SIGNED};

/// Values per NF4 block (bitsandbytes' default `blocksize=64`).
pub const NF4_BLOCKSIZE: usize = 64;

/// Blocks handled by one rayon task: large enough to amortise scheduling, small enough to balance.
const BLOCKS_PER_TASK: usize = 256;

/// The NF4 codebook, indexed by code (bitsandbytes `get_4bit_type("nf4")`).
#[allow(clippy::excessive_precision)]
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
];

/// The 15 decision thresholds of bitsandbytes' `dQuantizeNF4`, increasing, copied as decimal
/// text so that Rust rounds them to f32 exactly as nvcc does (see the module docs).
#[allow(clippy::excessive_precision)]
pub const NF4_THRESHOLDS: [f32; 15] = [
    -0.8480964004993439,
    -0.6106329262256622,
    -0.4599952697753906,
    -0.33967943489551544,
    -0.23460740596055984,
    -0.13791173323988914,
    -0.045525018125772476,
    0.03979014977812767,
    0.1202552504837513,
    0.2035212516784668,
    0.2920137718319893,
    0.3893125355243683,
    0.5016634166240692,
    0.6427869200706482,
    0.8614784181118011,
];

/// NF4 code of a value already divided by its block absmax.
///
/// Counting the thresholds below `x` is the same function as bitsandbytes' binary decision
/// tree (including NaN → 0), but branch-free, so the per-block loop vectorises.
#[inline]
pub fn nf4_encode(x: f32) -> u8 {
    NF4_THRESHOLDS.iter().map(|&t| (x > t) as u8).sum()
}

/// Pack codes two per byte, first in the high nibble. An odd count pads the last low nibble with
/// 7 (the code of 0.0), which is what bitsandbytes stores unless the last block is all zero;
/// [`Nf4Weight::quantize`] writes that exact pad itself.
pub fn pack(codes: &[u8]) -> Vec<u8> {
    codes.chunks(2).map(|p| (p[0] << 4) | p.get(1).copied().unwrap_or(7)).collect()
}

/// Unpack `n` codes from bytes written by [`pack`] (high nibble first).
///
/// # Panics
/// If `packed` holds fewer than `n` codes.
pub fn unpack(packed: &[u8], n: usize) -> Vec<u8> {
    assert!(packed.len() * 2 >= n, "{} packed bytes hold fewer than {n} codes", packed.len());
    let mut out = Vec::with_capacity(packed.len() * 2);
    for &b in packed {
        out.push(b >> 4);
        out.push(b & 0x0F);
    }
    out.truncate(n);
    out
}

/// How the per-block scales of an NF4 weight are stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Nf4Absmax {
    /// One f32 absmax per block (`quantize_4bit(..., compress_statistics=False)`).
    F32(Vec<f32>),
    /// QLoRA double quantization (`compress_statistics=True`): one byte per block, see
    /// [`super::dq`]. `code` is the dynamic map the bytes index, stored so the format is
    /// self-describing like bitsandbytes' `QuantState.state2.code`.
    DoubleQuant {
        /// One dynamic-map index per block.
        q: Vec<u8>,
        /// One f32 scale per 256 blocks.
        scales: Vec<f32>,
        /// Mean absmax, added back after dequantization.
        offset: f32,
        /// The signed 8-bit dynamic map ([`DYNAMIC_MAP_SIGNED`]).
        code: Box<[f32; 256]>,
    },
}

/// An `out_features × in_features` weight in bitsandbytes NF4.
#[derive(Debug, Clone, PartialEq)]
pub struct Nf4Weight {
    /// Two codes per byte, `ceil(n / 2)` bytes, first element in the high nibble.
    pub packed: Vec<u8>,
    /// The per-block scales.
    pub absmax: Nf4Absmax,
    /// Rows of the weight.
    pub out_features: usize,
    /// Columns of the weight.
    pub in_features: usize,
}

/// Quantize one block into its packed bytes; returns the block's absmax.
fn quantize_block(x: &[f32], out: &mut [u8]) -> f32 {
    let absmax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let inv = 1.0f32 / absmax;
    let mut codes = [0u8; NF4_BLOCKSIZE + 1];
    let mut norm = [0f32; NF4_BLOCKSIZE + 1];
    let len = x.len();
    for (n, &v) in norm.iter_mut().zip(x) {
        *n = v * inv;
    }
    // bitsandbytes pads a partial block with zeros before normalising.
    norm[len] = 0.0 * inv;
    for &t in NF4_THRESHOLDS.iter() {
        for (c, &n) in codes.iter_mut().zip(norm.iter()) {
            *c += (n > t) as u8;
        }
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = (codes[2 * i] << 4) | codes[2 * i + 1];
    }
    absmax
}

impl Nf4Weight {
    /// Quantize a row-major `out_features × in_features` weight, as bitsandbytes'
    /// `quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double_quant)`.
    ///
    /// # Panics
    /// If `w.len() != out_features * in_features`.
    pub fn quantize(w: &[f32], out_features: usize, in_features: usize, double_quant: bool) -> Self {
        let n = out_features * in_features;
        assert_eq!(w.len(), n, "weight has {} values, expected {out_features}×{in_features}", w.len());
        let mut packed = vec![0u8; n.div_ceil(2)];
        let mut absmax = vec![0f32; n.div_ceil(NF4_BLOCKSIZE)];
        let per_task = NF4_BLOCKSIZE * BLOCKS_PER_TASK;
        w.par_chunks(per_task)
            .zip(packed.par_chunks_mut(per_task / 2))
            .zip(absmax.par_chunks_mut(BLOCKS_PER_TASK))
            .for_each(|((x, p), a)| {
                for ((xb, pb), ab) in x.chunks(NF4_BLOCKSIZE).zip(p.chunks_mut(NF4_BLOCKSIZE / 2)).zip(a.iter_mut()) {
                    *ab = quantize_block(xb, pb);
                }
            });
        let absmax = if double_quant {
            let dq = DoubleQuantized::quantize(&absmax);
            Nf4Absmax::DoubleQuant { q: dq.q, scales: dq.scales, offset: dq.offset, code: Box::new(DYNAMIC_MAP_SIGNED) }
        } else {
            Nf4Absmax::F32(absmax)
        };
        Self { packed, absmax, out_features, in_features }
    }

    /// Number of weights.
    pub fn len(&self) -> usize {
        self.out_features * self.in_features
    }

    /// True for a weight with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the absmax values are double-quantized.
    pub fn is_double_quant(&self) -> bool {
        matches!(self.absmax, Nf4Absmax::DoubleQuant { .. })
    }

    /// The f32 scale of every block, as the dequantizer uses it (for double quant:
    /// `code[q] * scale + offset`, exactly as bitsandbytes' `dequantize_4bit`).
    pub fn block_absmax(&self) -> Vec<f32> {
        match &self.absmax {
            Nf4Absmax::F32(a) => a.clone(),
            Nf4Absmax::DoubleQuant { q, scales, offset, code } => {
                super::dq::dequantize_blockwise(q, scales, code, super::dq::DQ_BLOCKSIZE)
                    .into_iter()
                    .map(|a| a + offset)
                    .collect()
            }
        }
    }

    /// The row-major f32 weight, `NF4_CODE[code] * absmax[block]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.len();
        let absmax = self.block_absmax();
        let mut out = vec![0f32; n];
        let per_task = NF4_BLOCKSIZE * BLOCKS_PER_TASK;
        out.par_chunks_mut(per_task)
            .zip(self.packed.par_chunks(per_task / 2))
            .zip(absmax.par_chunks(BLOCKS_PER_TASK))
            .for_each(|((o, p), a)| {
                for ((ob, pb), &ab) in o.chunks_mut(NF4_BLOCKSIZE).zip(p.chunks(NF4_BLOCKSIZE / 2)).zip(a.iter()) {
                    for (pair, &byte) in ob.chunks_mut(2).zip(pb) {
                        pair[0] = NF4_CODE[(byte >> 4) as usize] * ab;
                        if let Some(second) = pair.get_mut(1) {
                            *second = NF4_CODE[(byte & 0x0F) as usize] * ab;
                        }
                    }
                }
            });
        out
    }

    /// Bytes this weight occupies; equals [`super::Precision::weight_bytes`] for `Nf4`/`Nf4Dq`
    /// (the shared 1 KiB dynamic map is not counted, as it is a constant of the format).
    pub fn storage_bytes(&self) -> u64 {
        let scales = match &self.absmax {
            Nf4Absmax::F32(a) => 4 * a.len(),
            Nf4Absmax::DoubleQuant { q, scales, .. } => q.len() + 4 * scales.len() + 4,
        };
        (self.packed.len() + scales) as u64
    }

    /// Device tensors for [`dequantize_tensor`]: the packed codes as a `U8` tensor of
    /// `ceil(n/2)` bytes and the block absmax as an `F32` tensor of `ceil(n/64)` values.
    ///
    /// For double quant the absmax is dequantized here, on the host, into f32 (bit-identical to
    /// what bitsandbytes computes): the device then holds 4 bytes per block instead of 1 + 4/256,
    /// 0.047 bytes per weight more than [`Self::storage_bytes`] says; that is the price of one
    /// device-agnostic dequantizer.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let packed = Tensor::from_slice(&self.packed, self.packed.len(), device)?;
        let absmax = self.block_absmax();
        let absmax = Tensor::from_slice(&absmax, absmax.len(), device)?;
        Ok((packed, absmax))
    }
}

/// A `[256, 2]` f32 table giving both NF4 values of every possible byte (high nibble first).
///
/// candle has no bitwise ops; one gather of whole bytes (as U32 ids) through this table unpacks
/// and decodes in a single pass on any device. Build it once per device and pass it to
/// [`dequantize_tensor_with_table`] to avoid re-uploading it on every call.
pub fn pair_table(device: &Device) -> Result<Tensor> {
    let mut t = Vec::with_capacity(512);
    for b in 0..256usize {
        t.push(NF4_CODE[b >> 4]);
        t.push(NF4_CODE[b & 0x0F]);
    }
    Tensor::from_vec(t, (256, 2), device)
}

/// Rebuild the `[out_features, in_features]` weight in `dtype` from [`Nf4Weight::to_tensors`]'
/// output, with candle tensor ops only (so it runs wherever the tensors live).
pub fn dequantize_tensor(
    packed: &Tensor,
    absmax: &Tensor,
    out_features: usize,
    in_features: usize,
    dtype: DType,
) -> Result<Tensor> {
    let table = pair_table(packed.device())?;
    dequantize_tensor_with_table(&table, packed, absmax, out_features, in_features, dtype)
}

/// [`dequantize_tensor`] with a table from [`pair_table`] made once on the same device.
///
/// The products are computed in f32 (`code * absmax`, as bitsandbytes does) and only then cast,
/// so the F32 result equals [`Nf4Weight::dequantize`] bit for bit.
pub fn dequantize_tensor_with_table(
    table: &Tensor,
    packed: &Tensor,
    absmax: &Tensor,
    out_features: usize,
    in_features: usize,
    dtype: DType,
) -> Result<Tensor> {
    let n = out_features * in_features;
    let blocks = n.div_ceil(NF4_BLOCKSIZE);
    let packed = packed.flatten_all()?;
    let absmax = absmax.flatten_all()?;
    if packed.dtype() != DType::U8 || packed.elem_count() != n.div_ceil(2) {
        candle_core::bail!(
            "nf4: packed codes must be {} U8 values for {out_features}×{in_features}, got {:?} {:?}",
            n.div_ceil(2),
            packed.dtype(),
            packed.shape()
        );
    }
    if absmax.dtype() != DType::F32 || absmax.elem_count() != blocks {
        candle_core::bail!(
            "nf4: absmax must be {blocks} F32 values for {out_features}×{in_features}, got {:?} {:?}",
            absmax.dtype(),
            absmax.shape()
        );
    }
    // Widen the ids first: candle's index_select treats the id equal to the index type's maximum
    // (255 for U8, the byte 0xFF = two 1.0 codes) as padding and returns zeros for it.
    let ids = packed.to_dtype(DType::U32)?;
    let mut values = table.index_select(&ids, 0)?.flatten_all()?;
    let padded = blocks * NF4_BLOCKSIZE;
    if values.elem_count() != padded {
        values = values.narrow(0, 0, n)?.pad_with_zeros(0, 0, padded - n)?;
    }
    let mut w = values.reshape((blocks, NF4_BLOCKSIZE))?.broadcast_mul(&absmax.reshape((blocks, 1))?)?.flatten_all()?;
    if padded != n {
        w = w.narrow(0, 0, n)?;
    }
    w.reshape((out_features, in_features))?.to_dtype(dtype)
}

#[cfg(test)]
mod tests;
