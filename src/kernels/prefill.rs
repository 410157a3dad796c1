//! Prefill of a quantized weight on the GPU: dequantized to 16 bits in one pass, then multiplied by
//! cuBLAS. By default the whole weight at once. With `MINILAB_PREFILL_CHUNK_MB=N` it goes in row
//! chunks of at most N MB, each multiplied as soon as it is written, so that cuBLAS may read the
//! chunk from L2 while it is still there. That is opt-in because it is slower: in
//! `bench/kernels/prefill_bench.cu` on an H100 a 3B prompt's int8 linears took 8.73 / 11.06 / 13.27 ms
//! in 32 / 16 / 8 MB chunks against 8.03 ms whole (BENCHMARKS.md, issue 11 session 11). Hiding the
//! pass instead behind the GEMMs, as one persistent kernel on a slice of the SMs while cuBLAS keeps
//! the rest (`prefill_bench --overlap`), was 1.5–2.5× slower than this way on an H100 (session 31).

use super::params::Format;
use candle_core::{DType, Result, Tensor, D};
use std::sync::OnceLock;

/// Rows of an `[n, k]` weight in `dtype` dequantized at a time: all `n` unless
/// `MINILAB_PREFILL_CHUNK_MB` is set, then as many as fit in that many MB (a multiple of 64, at
/// least 64).
pub(super) fn chunk_rows(n: usize, k: usize, dtype: DType) -> usize {
    static MB: OnceLock<Option<usize>> = OnceLock::new();
    let mb = MB.get_or_init(|| std::env::var("MINILAB_PREFILL_CHUNK_MB").ok().and_then(|v| v.trim().parse().ok()));
    match mb.filter(|&mb| mb > 0) {
        Some(mb) => rows_in(mb << 20, k, dtype).min(n),
        None => n,
    }
}

fn rows_in(bytes: usize, k: usize, dtype: DType) -> usize {
    (bytes / (k * dtype.size_in_bytes()).max(1) / 64 * 64).max(64)
}

/// Rows `n0 .. n0 + rows` of a weight stored as `a` and `b` (int8: codes `[n, k]`, scales `[n, 1]`;
/// NF4: packed `[n·k/2]`, absmax `[n·k/64]`), as views of them.
pub(super) fn encoded_rows(
    format: Format,
    (a, b): (&Tensor, &Tensor),
    k: usize,
    n0: usize,
    rows: usize,
) -> Result<(Tensor, Tensor)> {
    match format {
        Format::Int8 => Ok((a.narrow(0, n0, rows)?, b.narrow(0, n0, rows)?)),
        Format::Nf4 => Ok((a.narrow(0, n0 * k / 2, rows * k / 2)?, b.narrow(0, n0 * k / 64, rows * k / 64)?)),
        Format::Dense => candle_core::bail!("prefill: a dense weight needs no dequantizing"),
    }
}

/// `xs[m, k]·Wᵀ` → `[m, n]`, the weight's rows produced `chunk` at a time by `weight_rows(n0, rows)`
/// (`[rows, k]`), each multiplied at once, the products side by side.
pub(super) fn chunked(
    xs: &Tensor,
    n: usize,
    chunk: usize,
    mut weight_rows: impl FnMut(usize, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    if chunk >= n {
        return xs.matmul(&weight_rows(0, n)?.t()?);
    }
    let mut parts = Vec::with_capacity(n.div_ceil(chunk));
    for n0 in (0..n).step_by(chunk.max(1)) {
        let rows = chunk.min(n - n0);
        // [m, k]·[k, rows] → [m, rows]
        parts.push(xs.matmul(&weight_rows(n0, rows)?.t()?)?);
    }
    Tensor::cat(&parts, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{int8, nf4};
    use candle_core::Device;

    fn weight(n: usize, k: usize) -> Result<Tensor> {
        Tensor::randn(0f32, 0.05, (n, k), &Device::Cpu)
    }

    #[test]
    fn chunks_hold_64_row_multiples_that_fit() {
        assert_eq!(rows_in(16 << 20, 3072, DType::BF16), 2688);
        assert_eq!(rows_in(1, 14336, DType::BF16), 64);
        assert_eq!(rows_in(8 << 20, 4096, DType::F32), 512);
    }

    /// Products of row chunks side by side equal the product of the whole weight, for chunks that
    /// divide the rows and for a short last chunk.
    #[test]
    fn chunked_products_equal_the_whole() -> Result<()> {
        let (xs, w) = (Tensor::randn(0f32, 1.0, (5, 64), &Device::Cpu)?, weight(200, 64)?);
        let whole = xs.matmul(&w.t()?)?;
        for chunk in [1, 64, 100, 128, 200, 500] {
            let got = chunked(&xs, 200, chunk, |n0, rows| w.narrow(0, n0, rows))?;
            let d = (got - &whole)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(d < 1e-5, "chunk {chunk}: {d}");
        }
        Ok(())
    }

    /// The views of rows n0 .. n0 + rows dequantize to those rows of the whole weight.
    #[test]
    fn encoded_rows_are_the_weights_rows() -> Result<()> {
        let (n, k) = (192, 128);
        let w: Vec<f32> = weight(n, k)?.flatten_all()?.to_vec1()?;
        let dev = Device::Cpu;
        let (codes, scales) = int8::Int8Weight::quantize(&w, n, k).to_tensors(&dev)?;
        let full = int8::dequantize_tensor(&codes, &scales, DType::F32)?;
        let (c, s) = encoded_rows(Format::Int8, (&codes, &scales), k, 64, 100)?;
        let rows = int8::dequantize_tensor(&c, &s, DType::F32)?;
        assert_eq!(rows.to_vec2::<f32>()?, full.narrow(0, 64, 100)?.to_vec2::<f32>()?);
        let (packed, absmax) = nf4::Nf4Weight::quantize(&w, n, k, false).to_tensors(&dev)?;
        let full = nf4::dequantize_tensor(&packed, &absmax, n, k, DType::F32)?;
        let (p, a) = encoded_rows(Format::Nf4, (&packed, &absmax), k, 64, 100)?;
        let rows = nf4::dequantize_tensor(&p, &a, 100, k, DType::F32)?;
        assert_eq!(rows.to_vec2::<f32>()?, full.narrow(0, 64, 100)?.to_vec2::<f32>()?);
        Ok(())
    }
}
