//! Several linear layers that share their input in one GPU launch at decode (q/k/v, gate/up), and
//! what such a launch can do besides the products: silu(gate)·up, RoPE with the KV-cache writes,
//! the residual add after a layer and the RMSNorm before one. Each entry point returns `None`
//! where its launch does not apply; the caller then takes the plain layers and ops.

use super::cpu;
use super::cpu::NF4_BLOCK;
use super::fold::{norm_fold, NormFold, NormRef, NormStats};
use super::op::{aligned, enabled, is_float};
use super::params::Format;
use crate::switch::Switch;
use candle_core::{Result, Tensor};

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
    pub(super) fn format(&self) -> Format {
        match self {
            Self::Dense(_) => Format::Dense,
            Self::Int8 { .. } => Format::Int8,
            Self::Nf4 { .. } => Format::Nf4,
        }
    }

    /// The stored tensors: the weight, then its scales.
    pub(crate) fn tensors(&self) -> Vec<&Tensor> {
        match *self {
            Self::Dense(w) => vec![w],
            Self::Int8 { codes, scales } => vec![codes, scales],
            Self::Nf4 { packed, absmax, .. } => vec![packed, absmax],
        }
    }

    pub(crate) fn device(&self) -> &candle_core::Device {
        self.tensors()[0].device()
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

/// `xs[…, k]·W_iᵀ` for two or three weights read against one `xs` in a single GPU launch (q/k/v,
/// gate/up), each output `[…, n_i]`. `None` where that launch does not apply (CPU, prefill rows,
/// shapes that differ, kernels off, formats that differ where [`set_fuse_mixed`] says no or xs is
/// not one 16-bit row): the caller runs the layers one by one.
/// With `norm`, xs is the residual stream and the launch normalizes it first ([`NormRef`]).
pub fn linear_many(xs: &Tensor, ws: &[WeightRef<'_>], norm: Option<NormRef<'_>>) -> Result<Option<Vec<Tensor>>> {
    let Some((dims, k)) = many_applies(xs, ws, norm)? else { return Ok(None) };
    many_cuda(&aligned(xs)?, ws, (&dims, k), (Epi::Plain, norm)).map(Some)
}

/// RoPE and the KV append in the q/k/v launch, on unless `MINILAB_FUSE_ROPE=0`: 1–2 % faster decode
/// on the H200, its logits as far from the plain path as the separate kernel's to four digits
/// (BENCHMARKS.md, issue 11 session 9; `device_check cuda rope` compares them bit for bit).
static FUSE_ROPE: Switch = Switch::new("MINILAB_FUSE_ROPE", &["0"]);

/// Turns the RoPE fusion of [`linear_qkv_rope`] on or off for the rest of the process, whatever the
/// variable says.
pub fn set_fuse_rope(on: bool) {
    FUSE_ROPE.set(on);
}

/// Whether a decode step on `device` reads its q/k/v and gate/up groups in one launch each (a GPU
/// with the kernels on), so that a plan splitting a group across formats may launch differently;
/// elsewhere every layer runs alone in any plan.
pub fn fuses_groups(device: &candle_core::Device) -> bool {
    enabled() && device.is_cuda()
}

/// Layers of different formats in one launch (gemv_mixed.cuh), on unless `MINILAB_FUSE_MIXED=0`.
/// Off, a q/k/v or gate/up group that a plan splits across formats runs layer by layer, with its
/// norm, RoPE and KV writes or silu·up as launches of their own (BENCHMARKS.md, issue 11 session 29).
static FUSE_MIXED: Switch = Switch::new("MINILAB_FUSE_MIXED", &["0"]);

/// Turns the launches of mixed formats on or off for the rest of the process, whatever the
/// variable says.
pub fn set_fuse_mixed(on: bool) {
    FUSE_MIXED.set(on);
}

/// `silu(xs·gateᵀ)·(xs·upᵀ)` `[…, n]`, the MLP's gate/up and its activation in one GPU launch.
/// `None` where that launch does not apply ([`linear_many`]'s cases, and weights of two shapes).
/// With `norm`, as [`linear_many`].
pub fn linear_silu_mul(
    xs: &Tensor,
    gate: WeightRef<'_>,
    up: WeightRef<'_>,
    norm: Option<NormRef<'_>>,
) -> Result<Option<Tensor>> {
    let ws = [gate, up];
    let Some((dims, k)) = many_applies(xs, &ws, norm)? else { return Ok(None) };
    if dims[0] != dims[1] || !fuses(gate.format(), xs.dtype(), xs.elem_count() / k, Epi::SiluMul) {
        return Ok(None);
    }
    Ok(many_cuda(&aligned(xs)?, &ws, (&dims, k), (Epi::SiluMul, norm))?.pop())
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
/// Off with `MINILAB_FUSE_ROPE=0`; `None` where it does not
/// apply ([`linear_many`]'s cases, shapes that are not q/k/v of these caches): the caller then takes
/// [`linear_many`] and `rope_kv`. With `norm`, as [`linear_many`].
pub fn linear_qkv_rope(
    xs: &Tensor,
    ws: [WeightRef<'_>; 3],
    rope: RopeKvRefs<'_>,
    norm: Option<NormRef<'_>>,
) -> Result<Option<Tensor>> {
    if !FUSE_ROPE.get() {
        return Ok(None);
    }
    let Some((dims, k)) = many_applies(xs, &ws, norm)? else { return Ok(None) };
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
    let q = many_cuda(&aligned(xs)?, &ws, (&dims, k), (Epi::Rope(rope), norm))?.pop();
    // (b, heads·d) → (b, heads, 1, d)
    q.map(|q| q.reshape((b, rope.heads, 1, d))).transpose()
}

/// What a multi-weight launch writes: each output, silu(gate)·up, q with RoPE and the KV writes,
/// res + the product, or that and the next norm's statistics into `out` (its weight `next`).
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(super) enum Epi<'a> {
    Plain,
    SiluMul,
    Rope(RopeKvRefs<'a>),
    Residual(&'a Tensor),
    ResidualStats { res: &'a Tensor, next: &'a Tensor, out: &'a NormStats },
}

#[cfg(feature = "cuda")]
fn fuses(format: Format, dtype: candle_core::DType, rows: usize, epi: Epi<'_>) -> bool {
    use super::cuda::{Epilogue, RopeArg};
    let epi = match epi {
        Epi::Plain => Epilogue::Plain,
        Epi::SiluMul => Epilogue::SiluMul,
        Epi::Rope(_) => Epilogue::Rope(RopeArg::default()),
        Epi::Residual(_) | Epi::ResidualStats { .. } => Epilogue::Residual(0),
    };
    super::cuda::epilogue_fuses(format, dtype, rows, epi)
}

#[cfg(not(feature = "cuda"))]
fn fuses(_: Format, _: candle_core::DType, _: usize, _: Epi<'_>) -> bool {
    false
}

/// Each weight's `(n, k)`, and the `k` they share.
pub(super) type ManyDims = (Vec<(usize, usize)>, usize);

/// The weights' dims where one GEMV launch takes `ws` against `xs` (and normalizes xs first, with
/// `norm`).
pub(super) fn many_applies(xs: &Tensor, ws: &[WeightRef<'_>], norm: Option<NormRef<'_>>) -> Result<Option<ManyDims>> {
    let Some(first) = ws.first() else { return Ok(None) };
    let (_, k) = first.dims()?;
    let rows = xs.elem_count() / k.max(1);
    let dims = ws.iter().map(|w| w.dims()).collect::<Result<Vec<_>>>()?;
    let one_format = !is_mixed(ws);
    let applies = enabled()
        && xs.device().is_cuda()
        && is_float(xs.dtype())
        && xs.dims().last() == Some(&k)
        && (1..=3).contains(&ws.len())
        && (1..=cpu::GEMV_MAX_ROWS).contains(&rows)
        && k.is_multiple_of(if ws.iter().any(|w| w.format() == Format::Nf4) { NF4_BLOCK } else { 16 })
        && (one_format || (FUSE_MIXED.get() && mixed_fits(xs.dtype(), rows)))
        && dims.iter().all(|&(_, wk)| wk == k)
        && ws.iter().all(|w| !matches!(w, WeightRef::Dense(t) if t.dtype() != xs.dtype()));
    let norm_ok = norm.is_none_or(|n| {
        norm_fold() != NormFold::Off
            && norm_fits(xs.dtype(), rows, k)
            && n.weight.elem_count() == k
            && n.weight.dtype() == xs.dtype()
            && n.weight.device().same_device(xs.device())
    });
    Ok((applies && norm_ok).then_some((dims, k)))
}

/// Whether the weights hold more than one format.
fn is_mixed(ws: &[WeightRef<'_>]) -> bool {
    ws.iter().any(|w| w.format() != ws[0].format())
}

#[cfg(feature = "cuda")]
fn norm_fits(dtype: candle_core::DType, rows: usize, k: usize) -> bool {
    super::cuda::norm_fits(dtype, rows, k)
}

#[cfg(not(feature = "cuda"))]
fn norm_fits(_: candle_core::DType, _: usize, _: usize) -> bool {
    false
}

#[cfg(feature = "cuda")]
fn mixed_fits(dtype: candle_core::DType, rows: usize) -> bool {
    super::cuda::mixed_fits(dtype, rows)
}

#[cfg(not(feature = "cuda"))]
fn mixed_fits(_: candle_core::DType, _: usize) -> bool {
    false
}

#[cfg(feature = "cuda")]
pub(super) fn many_cuda(
    xs: &Tensor,
    ws: &[WeightRef<'_>],
    (dims, k): (&[(usize, usize)], usize),
    (epi, norm): (Epi<'_>, Option<NormRef<'_>>),
) -> Result<Vec<Tensor>> {
    use candle_core::{op::BackpropOp, Storage};
    // the stats way's launch after a norm reads xw in place of xs
    let stats = norm.and_then(|n| n.stats).filter(|s| s.fit(xs, k));
    let xs = stats.map_or(xs, |s| &s.xw);
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
    for ((((a, la), b), &(n, _)), w) in guards.iter().zip(dims).zip(ws) {
        let b = match b {
            Some((b, lb)) => Some((on_gpu(b)?, *lb)),
            None => None,
        };
        parts.push(super::cuda::GemvPart { format: w.format(), a: (on_gpu(a)?, la), b, n });
    }
    let rows = xs.elem_count() / k;
    let launch = |e, norm| super::cuda::gemv_parts((on_gpu(&xs_storage)?, xs_layout), &parts, k, e, norm);
    let ys = launch_with_addresses((epi, norm, stats), (rows, is_mixed(ws)), launch)?;
    let outs = if matches!(epi, Epi::Plain) { dims } else { &dims[..1] };
    let total: usize = outs.iter().map(|d| d.0).sum();
    split_parts(&Tensor::from_storage(Storage::Cuda(ys), rows * total, BackpropOp::none(), false), xs.dims(), outs)
}

#[cfg(feature = "cuda")]
fn on_gpu(s: &candle_core::Storage) -> Result<&candle_core::CudaStorage> {
    match s {
        candle_core::Storage::Cuda(c) => Ok(c),
        _ => candle_core::bail!("linear kernel: a weight is not on the GPU"),
    }
}

/// `launch` with the epilogue and norm arguments of `epi` and `norm` (with `stats`, the stats way's
/// launch after a norm), while the device addresses they name hold. A launch of `mixed` formats
/// takes the block's norm where the others would take the late way (it has no late kernels).
#[cfg(feature = "cuda")]
fn launch_with_addresses(
    (epi, norm, stats): (Epi<'_>, Option<NormRef<'_>>, Option<&NormStats>),
    (rows, mixed): (usize, bool),
    launch: impl Fn(super::cuda::Epilogue, Option<super::cuda::NormArg>) -> Result<candle_core::CudaStorage>,
) -> Result<candle_core::CudaStorage> {
    use super::cuda::{decode as gpu, Epilogue, NormArg, NormWay, StatsOut};
    let norm_w = norm.map(|n| n.weight.contiguous()).transpose()?;
    // taken in this order below
    let mut extra: Vec<&Tensor> = norm_w.iter().chain(stats.map(|s| &s.partials)).collect();
    match epi {
        Epi::Residual(r) => extra.push(r),
        Epi::ResidualStats { res, next, out } => extra.extend([res, next, &out.xw, &out.partials]),
        _ => {}
    }
    gpu::with_addresses(&extra, |ptrs| {
        let mut addrs = ptrs.iter().copied();
        let mut take = || addrs.next().unwrap_or(0);
        let norm = norm.map(|n| {
            let w = take();
            let way = match stats {
                Some(s) => NormWay::Stats { partial: take(), count: s.partials.elem_count() as i32 },
                // the late way reads the norm's weight 16 bytes at a time
                None if norm_fold().late() && !mixed && w.is_multiple_of(16) => NormWay::Late,
                None => NormWay::Shared,
            };
            NormArg { w, eps: n.eps, way }
        });
        match epi {
            Epi::Plain => launch(Epilogue::Plain, norm),
            Epi::SiluMul => launch(Epilogue::SiluMul, norm),
            Epi::Residual(_) => launch(Epilogue::Residual(take()), norm),
            Epi::ResidualStats { .. } => {
                let out = StatsOut { res: take(), w: take(), xw: take(), partial: take() };
                launch(Epilogue::ResidualStats(out), norm)
            }
            Epi::Rope(r) => {
                let (_, kv_heads, cap, d) = r.caches[0].dims4()?;
                let s = gpu::RopeKv { b: rows, t: 1, heads: r.heads, kv_heads, cap, d };
                gpu::with_rope_arg(&s, r.tables, r.pos, r.caches, |arg| launch(Epilogue::Rope(arg), norm))
            }
        }
    })
}

/// The outputs of a launch, part after part in one flat buffer, each shaped as xs with its last
/// dim `n_i`.
#[cfg(feature = "cuda")]
fn split_parts(flat: &Tensor, xs_dims: &[usize], outs: &[(usize, usize)]) -> Result<Vec<Tensor>> {
    let rows = xs_dims.iter().rev().skip(1).product::<usize>();
    let mut out = Vec::with_capacity(outs.len());
    let mut offset = 0;
    for &(n, _) in outs {
        let mut shape = xs_dims.to_vec();
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
pub(super) fn many_cuda(
    _: &Tensor,
    _: &[WeightRef<'_>],
    _: (&[(usize, usize)], usize),
    _: (Epi<'_>, Option<NormRef<'_>>),
) -> Result<Vec<Tensor>> {
    candle_core::bail!("linear kernel: built without CUDA")
}
