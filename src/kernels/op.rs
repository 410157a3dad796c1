//! The kernels as candle custom ops, so a linear layer stays one `Tensor` expression.

use super::cpu::{self, WeightView, NF4_BLOCK};
use super::params::Format;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use half::{bf16, f16};

static ENABLED: crate::switch::Switch = crate::switch::Switch::new("MINILAB_KERNELS", &["plain"]);

/// Turns the fused kernels on or off for the whole process (off: dequantize, then matmul). They
/// start on unless `MINILAB_KERNELS=plain` is set.
pub fn set_enabled(on: bool) {
    ENABLED.set(on);
}

/// Whether linear layers use the fused kernels.
pub fn enabled() -> bool {
    ENABLED.get()
}

/// `ys[…, n] = xs[…, k] · Wᵀ` for a `[n, k]` weight stored in `format`.
#[derive(Debug, Clone, Copy)]
struct LinearOp {
    format: Format,
    n: usize,
    k: usize,
}

/// `xs[…, k]·Wᵀ` for a dense `w` `[n, k]`, or `None` where no fused kernel applies (so the caller
/// takes the plain path).
pub fn dense(xs: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    let (n, k) = w.dims2()?;
    let op = LinearOp { format: Format::Dense, n, k };
    if !op.applies(xs) || !is_float(w.dtype()) {
        return Ok(None);
    }
    // On CUDA, cuBLAS keeps prefill; the GEMV reads weights in xs' dtype, 8 at a time.
    let rows = xs.elem_count() / k;
    if xs.device().is_cuda() && (rows > cpu::GEMV_MAX_ROWS || w.dtype() != xs.dtype() || !k.is_multiple_of(8)) {
        return Ok(None);
    }
    aligned(xs)?.apply_op2_no_bwd(&w.contiguous()?, &op).map(Some)
}

/// `xs` contiguous, and on CUDA starting on a 16-byte boundary (the kernels read 16-byte vectors).
pub(super) fn aligned(xs: &Tensor) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    if xs.device().is_cuda() && !(xs.layout().start_offset() * xs.dtype().size_in_bytes()).is_multiple_of(16) {
        return xs.copy();
    }
    Ok(xs)
}

/// `xs[…, k]·Wᵀ` for int8 `codes` `[n, k]` (q + 128) and `scales` `[n, 1]` f32.
pub fn int8(xs: &Tensor, codes: &Tensor, scales: &Tensor) -> Result<Option<Tensor>> {
    let (n, k) = codes.dims2()?;
    LinearOp { format: Format::Int8, n, k }.run(xs, codes, scales)
}

/// `xs[…, k]·Wᵀ` for an NF4 weight `[n, k]`: `packed` bytes and per-block `absmax` (f32).
pub fn nf4(xs: &Tensor, packed: &Tensor, absmax: &Tensor, n: usize, k: usize) -> Result<Option<Tensor>> {
    if !k.is_multiple_of(NF4_BLOCK) {
        return Ok(None);
    }
    LinearOp { format: Format::Nf4, n, k }.run(xs, packed, absmax)
}

pub(super) fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

impl LinearOp {
    fn applies(&self, xs: &Tensor) -> bool {
        let device_ok = xs.device().is_cpu() || xs.device().is_cuda();
        enabled() && device_ok && is_float(xs.dtype()) && xs.dims().last() == Some(&self.k)
    }

    /// A quantized product: the fused kernel for decode rows; on CUDA, prefill dequantizes the
    /// weight in one pass (whole, or in row chunks: [`super::prefill`]) and multiplies with cuBLAS,
    /// or with `MINILAB_QGEMM` runs a GEMM that reads the codes itself ([`super::qgemm`]).
    fn run(&self, xs: &Tensor, a: &Tensor, b: &Tensor) -> Result<Option<Tensor>> {
        if !self.applies(xs) {
            return Ok(None);
        }
        let rows = xs.elem_count() / self.k;
        if xs.device().is_cuda() {
            if !self.k.is_multiple_of(16) {
                return Ok(None);
            }
            if rows > cpu::GEMV_MAX_ROWS {
                let chunk = super::prefill::chunk_rows(self.n, self.k, xs.dtype());
                // the default way gives way to row chunks asked for by MINILAB_PREFILL_CHUNK_MB
                #[cfg(feature = "cuda")]
                if let Some(way) = super::qgemm::current().filter(|w| *w != super::qgemm::Way::Auto || chunk == self.n)
                {
                    if let Some(ys) = self.qgemm(way, &aligned(xs)?, (a, b))? {
                        return Ok(Some(ys));
                    }
                }
                let product = super::prefill::chunked(xs, self.n, chunk, |n0, n| {
                    let (a, b) = super::prefill::encoded_rows(self.format, (a, b), self.k, n0, n)?;
                    a.apply_op2_no_bwd(&b, &DequantOp { linear: LinearOp { n, ..*self }, dtype: xs.dtype() })
                })?;
                return Ok(Some(product));
            }
        }
        aligned(xs)?.apply_op3_no_bwd(a, b, self).map(Some)
    }

    /// The prompt's product through the GEMM `way` picks; `None` where it does not apply.
    #[cfg(feature = "cuda")]
    fn qgemm(&self, way: super::qgemm::Way, xs: &Tensor, w: (&Tensor, &Tensor)) -> Result<Option<Tensor>> {
        use super::qgemm::Way;
        match way {
            Way::Own(tile) => super::cuda::qgemm::qgemm(self.format, xs, w, (self.n, self.k), tile),
            #[cfg(feature = "cutlass")]
            Way::Auto if self.format == Format::Int8 => {
                super::cuda::cutlass::gemm(self.format, xs, w, (self.n, self.k))
            }
            #[cfg(feature = "cutlass")]
            Way::Cutlass => super::cuda::cutlass::gemm(self.format, xs, w, (self.n, self.k)),
            _ => Ok(None),
        }
    }

    fn out_shape(&self, xs: &Layout) -> Shape {
        let mut dims = xs.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.n;
        }
        Shape::from(dims)
    }

    /// Runs the CPU kernel on `xs` (any float dtype, computed in f32), returning `xs`' dtype.
    fn cpu(&self, xs: &CpuStorage, l: &Layout, w: WeightView) -> Result<(CpuStorage, Shape)> {
        let (start, end) = l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg("xs not contiguous".into()))?;
        let converted: Vec<f32>;
        let x: &[f32] = match xs {
            CpuStorage::F32(v) => &v[start..end],
            CpuStorage::F16(v) => {
                converted = v[start..end].iter().map(|v| v.to_f32()).collect();
                &converted
            }
            CpuStorage::BF16(v) => {
                converted = v[start..end].iter().map(|v| v.to_f32()).collect();
                &converted
            }
            _ => candle_core::bail!("linear kernel: xs must be a float tensor"),
        };
        w.check(self.n, self.k).map_err(candle_core::Error::Msg)?;
        let m = x.len() / self.k;
        let mut out = vec![0f32; m * self.n];
        cpu::matmul(x, m, self.k, &w, self.n, &mut out);
        let out = match xs {
            CpuStorage::F16(_) => CpuStorage::F16(out.iter().map(|&v| f16::from_f32(v)).collect()),
            CpuStorage::BF16(_) => CpuStorage::BF16(out.iter().map(|&v| bf16::from_f32(v)).collect()),
            _ => CpuStorage::F32(out),
        };
        Ok((out, self.out_shape(l)))
    }
}

/// The whole storage of a contiguous weight tensor.
fn whole<'a, T>(v: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((s, e)) => Ok(&v[s..e]),
        None => candle_core::bail!("linear kernel: weight not contiguous"),
    }
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "minilab-linear-dense"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, lx: &Layout, w: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        let view = match w {
            CpuStorage::F32(v) => WeightView::F32(whole(v, lw)?),
            CpuStorage::F16(v) => WeightView::F16(whole(v, lw)?),
            CpuStorage::BF16(v) => WeightView::Bf16(whole(v, lw)?),
            _ => candle_core::bail!("linear kernel: dense weight must be f32, f16 or bf16"),
        };
        self.cpu(xs, lx, view)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        lx: &Layout,
        w: &candle_core::CudaStorage,
        lw: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let part = super::cuda::GemvPart { format: Format::Dense, a: (w, lw), b: None, n: self.n };
        let ys = super::cuda::gemv_parts((xs, lx), &[part], self.k, super::cuda::Epilogue::Plain, None)?;
        Ok((ys, self.out_shape(lx)))
    }
}

/// A quantized weight `[n, k]` dequantized to `dtype` in one pass (CUDA prefill).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct DequantOp {
    linear: LinearOp,
    dtype: DType,
}

impl CustomOp2 for DequantOp {
    fn name(&self) -> &'static str {
        "minilab-dequantize"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("minilab-dequantize runs on CUDA only")
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        la: &Layout,
        b: &candle_core::CudaStorage,
        lb: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let LinearOp { format, n, k } = self.linear;
        let w = super::cuda::dequantize(format, (a, la), (b, lb), n, k, self.dtype)?;
        Ok((w, Shape::from((n, k))))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        match self.format {
            Format::Int8 => "minilab-linear-int8",
            _ => "minilab-linear-nf4",
        }
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        lx: &Layout,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::U8(bytes), CpuStorage::F32(scales)) = (a, b) else {
            candle_core::bail!("linear kernel: expected u8 codes and f32 scales")
        };
        let (bytes, scales) = (whole(bytes, la)?, whole(scales, lb)?);
        let view = match self.format {
            Format::Int8 => WeightView::Int8 { codes: bytes, scales },
            _ => WeightView::Nf4 { packed: bytes, absmax: scales },
        };
        self.cpu(xs, lx, view)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        lx: &Layout,
        a: &candle_core::CudaStorage,
        la: &Layout,
        b: &candle_core::CudaStorage,
        lb: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let part = super::cuda::GemvPart { format: self.format, a: (a, la), b: Some((b, lb)), n: self.n };
        let ys = super::cuda::gemv_parts((xs, lx), &[part], self.k, super::cuda::Epilogue::Plain, None)?;
        Ok((ys, self.out_shape(lx)))
    }
}
