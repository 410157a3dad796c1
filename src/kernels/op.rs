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
fn aligned(xs: &Tensor) -> Result<Tensor> {
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

fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

impl LinearOp {
    fn applies(&self, xs: &Tensor) -> bool {
        let device_ok = xs.device().is_cpu() || xs.device().is_cuda();
        enabled() && device_ok && is_float(xs.dtype()) && xs.dims().last() == Some(&self.k)
    }

    /// A quantized product: the fused kernel for decode rows; on CUDA, prefill dequantizes the
    /// weight in one pass and multiplies with cuBLAS.
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
                let w = a.apply_op2_no_bwd(b, &DequantOp { linear: *self, dtype: xs.dtype() })?;
                return xs.matmul(&w.t()?).map(Some);
            }
        }
        aligned(xs)?.apply_op3_no_bwd(a, b, self).map(Some)
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
        let part = super::cuda::GemvPart { a: (w, lw), b: None, n: self.n };
        let ys = super::cuda::gemv_parts(Format::Dense, (xs, lx), &[part], self.k, super::cuda::Epilogue::Plain)?;
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
        let part = super::cuda::GemvPart { a: (a, la), b: Some((b, lb)), n: self.n };
        let ys = super::cuda::gemv_parts(self.format, (xs, lx), &[part], self.k, super::cuda::Epilogue::Plain)?;
        Ok((ys, self.out_shape(lx)))
    }
}

/// A linear layer's stored weight, for [`linear_many`].
#[derive(Debug, Clone, Copy)]
pub enum WeightRef<'a> {
    /// `[n, k]` in xs' dtype.
    Dense(&'a Tensor),
    /// `codes` `[n, k]` u8, `scales` `[n, 1]` f32.
    Int8 { codes: &'a Tensor, scales: &'a Tensor },
    /// `packed` `[n·k/2]` u8, `absmax` `[n·k/64]` f32.
    Nf4 { packed: &'a Tensor, absmax: &'a Tensor, n: usize, k: usize },
}

impl WeightRef<'_> {
    fn format(&self) -> Format {
        match self {
            Self::Dense(_) => Format::Dense,
            Self::Int8 { .. } => Format::Int8,
            Self::Nf4 { .. } => Format::Nf4,
        }
    }

    /// `(n, k)`.
    fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Dense(w) => w.dims2(),
            Self::Int8 { codes, .. } => codes.dims2(),
            Self::Nf4 { n, k, .. } => Ok((*n, *k)),
        }
    }
}

/// `xs[…, k]·W_iᵀ` for two or three weights of one format read against one `xs` in a single GPU
/// launch (q/k/v, gate/up), each output `[…, n_i]`. `None` where that launch does not apply (CPU,
/// prefill rows, mixed formats or shapes, kernels off): the caller runs the layers one by one.
pub fn linear_many(xs: &Tensor, ws: &[WeightRef<'_>]) -> Result<Option<Vec<Tensor>>> {
    let Some((dims, k)) = many_applies(xs, ws)? else { return Ok(None) };
    many_cuda(&aligned(xs)?, ws, &dims, k, Epi::Plain).map(Some)
}

/// `silu(xs·gateᵀ)·(xs·upᵀ)` `[…, n]`, the MLP's gate/up and its activation in one GPU launch.
/// `None` where that launch does not apply ([`linear_many`]'s cases, and weights of two shapes).
pub fn linear_silu_mul(xs: &Tensor, gate: WeightRef<'_>, up: WeightRef<'_>) -> Result<Option<Tensor>> {
    let ws = [gate, up];
    let Some((dims, k)) = many_applies(xs, &ws)? else { return Ok(None) };
    if dims[0] != dims[1] || !fuses(gate.format(), xs.dtype(), xs.elem_count() / k, Epi::SiluMul) {
        return Ok(None);
    }
    Ok(many_cuda(&aligned(xs)?, &ws, &dims, k, Epi::SiluMul)?.pop())
}

/// The tensors of [`super::decode::rope_kv`], for a q/k/v launch that also does its work.
#[derive(Debug, Clone, Copy)]
pub struct RopeKvRefs<'a> {
    pub heads: usize,
    /// `[max_pos, d/2]` each.
    pub tables: [&'a Tensor; 2],
    /// `[1]` u32 on the device.
    pub pos: &'a Tensor,
    /// k and v, `[b, kv_heads, cap, d]` each.
    pub caches: [&'a Tensor; 2],
}

/// q/k/v of one new token per sequence in one GPU launch that also rotates q and k at `*pos` and
/// writes k and v into the caches there, as [`super::decode::rope_kv`] does → q `[b, heads, 1, d]`.
/// Opt-in with `MINILAB_FUSE_ROPE=1` (built, not yet checked on a GPU); `None` where it does not
/// apply ([`linear_many`]'s cases, shapes that are not q/k/v of these caches): the caller then takes
/// [`linear_many`] and `rope_kv`.
pub fn linear_qkv_rope(xs: &Tensor, ws: [WeightRef<'_>; 3], rope: RopeKvRefs<'_>) -> Result<Option<Tensor>> {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ON.get_or_init(|| std::env::var("MINILAB_FUSE_ROPE").as_deref() == Ok("1")) {
        return Ok(None);
    }
    let Some((dims, k)) = many_applies(xs, &ws)? else { return Ok(None) };
    let (b, kv_heads, _, d) = rope.caches[0].dims4()?;
    let rows = xs.elem_count() / k;
    let shapes = rows == b
        && d > 0
        && dims[0].0 == rope.heads * d
        && dims[1].0 == kv_heads * d
        && dims[2].0 == kv_heads * d
        && xs.dtype() == rope.caches[0].dtype();
    if !shapes || !fuses(ws[0].format(), xs.dtype(), rows, Epi::Rope(rope)) {
        return Ok(None);
    }
    let q = many_cuda(&aligned(xs)?, &ws, &dims, k, Epi::Rope(rope))?.pop();
    // (b, heads·d) → (b, heads, 1, d)
    q.map(|q| q.reshape((b, rope.heads, 1, d))).transpose()
}

/// What a multi-weight launch writes: each output, silu(gate)·up, or q with RoPE and the KV writes.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
enum Epi<'a> {
    Plain,
    SiluMul,
    Rope(RopeKvRefs<'a>),
}

#[cfg(feature = "cuda")]
fn fuses(format: Format, dtype: candle_core::DType, rows: usize, epi: Epi<'_>) -> bool {
    use super::cuda::{Epilogue, RopeArg};
    let epi = match epi {
        Epi::Plain => Epilogue::Plain,
        Epi::SiluMul => Epilogue::SiluMul,
        Epi::Rope(_) => Epilogue::Rope(RopeArg::default()),
    };
    super::cuda::epilogue_fuses(format, dtype, rows, epi)
}

#[cfg(not(feature = "cuda"))]
fn fuses(_: Format, _: candle_core::DType, _: usize, _: Epi<'_>) -> bool {
    false
}

/// Each weight's `(n, k)`, and the `k` they share.
type ManyDims = (Vec<(usize, usize)>, usize);

/// The weights' dims where one GEMV launch takes `ws` against `xs`.
fn many_applies(xs: &Tensor, ws: &[WeightRef<'_>]) -> Result<Option<ManyDims>> {
    let Some(first) = ws.first() else { return Ok(None) };
    let (_, k) = first.dims()?;
    let rows = xs.elem_count() / k.max(1);
    let format = first.format();
    let dims = ws.iter().map(|w| w.dims()).collect::<Result<Vec<_>>>()?;
    let applies = enabled()
        && xs.device().is_cuda()
        && is_float(xs.dtype())
        && xs.dims().last() == Some(&k)
        && (1..=3).contains(&ws.len())
        && (1..=cpu::GEMV_MAX_ROWS).contains(&rows)
        && k.is_multiple_of(if format == Format::Nf4 { NF4_BLOCK } else { 16 })
        && ws.iter().all(|w| w.format() == format)
        && dims.iter().all(|&(_, wk)| wk == k)
        && ws.iter().all(|w| !matches!(w, WeightRef::Dense(t) if t.dtype() != xs.dtype()));
    Ok(applies.then_some((dims, k)))
}

#[cfg(feature = "cuda")]
fn many_cuda(
    xs: &Tensor,
    ws: &[WeightRef<'_>],
    dims: &[(usize, usize)],
    k: usize,
    epi: Epi<'_>,
) -> Result<Vec<Tensor>> {
    use candle_core::{op::BackpropOp, Storage};
    fn cuda(s: &Storage) -> Result<&candle_core::CudaStorage> {
        match s {
            Storage::Cuda(c) => Ok(c),
            _ => candle_core::bail!("linear kernel: a weight is not on the GPU"),
        }
    }
    // (weight, scales) of each part, contiguous
    let tensors: Vec<(Tensor, Option<Tensor>)> = ws
        .iter()
        .map(|w| match w {
            WeightRef::Dense(t) => Ok((t.contiguous()?, None)),
            WeightRef::Int8 { codes: a, scales: b } | WeightRef::Nf4 { packed: a, absmax: b, .. } => {
                Ok((a.contiguous()?, Some(b.contiguous()?)))
            }
        })
        .collect::<Result<_>>()?;
    let (xs_storage, xs_layout) = xs.storage_and_layout();
    let guards: Vec<_> =
        tensors.iter().map(|(a, b)| (a.storage_and_layout(), b.as_ref().map(|b| b.storage_and_layout()))).collect();
    let mut parts = Vec::with_capacity(ws.len());
    for (((a, la), b), &(n, _)) in guards.iter().zip(dims) {
        let b = match b {
            Some((b, lb)) => Some((cuda(b)?, *lb)),
            None => None,
        };
        parts.push(super::cuda::GemvPart { a: (cuda(a)?, la), b, n });
    }
    let rows = xs.elem_count() / k;
    let launch = |e| super::cuda::gemv_parts(ws[0].format(), (cuda(&xs_storage)?, xs_layout), &parts, k, e);
    let ys = match epi {
        Epi::Plain => launch(super::cuda::Epilogue::Plain)?,
        Epi::SiluMul => launch(super::cuda::Epilogue::SiluMul)?,
        Epi::Rope(r) => {
            let (_, kv_heads, cap, d) = r.caches[0].dims4()?;
            let s = super::cuda::decode::RopeKv { b: rows, heads: r.heads, kv_heads, cap, d };
            let e = |arg| launch(super::cuda::Epilogue::Rope(arg));
            super::cuda::decode::with_rope_arg(&s, r.tables, r.pos, r.caches, e)?
        }
    };
    let outs = if matches!(epi, Epi::Plain) { dims } else { &dims[..1] };
    let total: usize = outs.iter().map(|d| d.0).sum();
    let flat = Tensor::from_storage(Storage::Cuda(ys), rows * total, BackpropOp::none(), false);
    let mut out = Vec::with_capacity(outs.len());
    let mut offset = 0;
    for &(n, _) in outs {
        let mut shape = xs.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = n;
        }
        // part i: [rows, n_i] at rows·(n_0 + … + n_{i-1})
        out.push(flat.narrow(0, offset, rows * n)?.reshape(shape)?);
        offset += rows * n;
    }
    Ok(out)
}

#[cfg(not(feature = "cuda"))]
fn many_cuda(_: &Tensor, _: &[WeightRef<'_>], _: &[(usize, usize)], _: usize, _: Epi<'_>) -> Result<Vec<Tensor>> {
    candle_core::bail!("linear kernel: built without CUDA")
}
