//! Several linear layers that share their input in one GPU launch at decode (q/k/v, gate/up), and
//! what such a launch can do besides the products: silu(gate)·up, RoPE with the KV-cache writes,
//! the residual add after a layer and the RMSNorm before one. Each entry point returns `None`
//! where its launch does not apply; the caller then takes the plain layers and ops.

use super::cpu;
use super::cpu::NF4_BLOCK;
use super::op::{aligned, enabled, is_float};
use super::params::Format;
use crate::switch::{Choice, Switch};
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
    fn format(&self) -> Format {
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

/// `xs[…, k]·W_iᵀ` for two or three weights of one format read against one `xs` in a single GPU
/// launch (q/k/v, gate/up), each output `[…, n_i]`. `None` where that launch does not apply (CPU,
/// prefill rows, mixed formats or shapes, kernels off): the caller runs the layers one by one.
/// With `norm`, xs is the residual stream and the launch normalizes it first ([`NormRef`]).
pub fn linear_many(xs: &Tensor, ws: &[WeightRef<'_>], norm: Option<NormRef<'_>>) -> Result<Option<Vec<Tensor>>> {
    let Some((dims, k)) = many_applies(xs, ws, norm)? else { return Ok(None) };
    many_cuda(&aligned(xs)?, ws, (&dims, k), (Epi::Plain, norm)).map(Some)
}

/// RMSNorm folded into a decode launch: xs is the residual stream `[1, k]`, normalized with `eps`
/// and scaled by `weight` `[k]` (xs' dtype) before the products, as [`super::decode::add_rms_norm`]
/// rounds it, or the late way ([`NormFold`] says which).
#[derive(Debug, Clone, Copy)]
pub struct NormRef<'a> {
    pub weight: &'a Tensor,
    pub eps: f32,
}

/// `res + xs·Wᵀ` `[…, n]` in one GPU launch at decode (o_proj and down_proj with the residual add,
/// rounded as [`super::decode::add_rms_norm`] rounds it), where the decode step folds ([`fold_norms`]);
/// `None` where it does not apply or `MINILAB_FUSE_NORM=0`.
pub fn linear_residual(xs: &Tensor, w: WeightRef<'_>, res: &Tensor) -> Result<Option<Tensor>> {
    if norm_fold() == NormFold::Off {
        return Ok(None);
    }
    let Some((dims, k)) = many_applies(xs, &[w], None)? else { return Ok(None) };
    let rows = xs.elem_count() / k;
    if res.elem_count() != rows * dims[0].0 || res.dtype() != xs.dtype() || !res.device().same_device(xs.device()) {
        return Ok(None);
    }
    many_cuda(&aligned(xs)?, &[w], (&dims, k), (Epi::Residual(&res.contiguous()?), None)).map(|mut v| v.pop())
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
/// How a decode step folds its norms and residual adds into the launches beside them
/// (`MINILAB_FUSE_NORM`). The late way: the one-row 16-bit launches after a norm take the gemv_ln_
/// kernels, whose warps multiply xs by the norm's weight and sum its squares as they load it, and
/// scale their products by the RMS factor at the end, so no block waits for a normalizing pass
/// before its first weight load (what made `=1` slower). The products then use xs·w unrounded
/// where `=1` rounds the normalized xs to 16 bits first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormFold {
    /// The late way where no linear of the model is NF4 and the step is one row of 16-bit
    /// activations (what the gemv_ln_ kernels take), else no fold (the default, `auto`). On the
    /// H100 the late way took f16 and int8 decode up 2–7 % on the 3B and the 8B, NF4 up 3 % on the
    /// 3B but down 3.4 % on the 8B (BENCHMARKS.md, issue 11 session 26).
    Auto,
    /// No fold (`0`).
    Off,
    /// Each block normalizes xs into shared memory before its first weight load (`1`): 13–16 %
    /// slower on the H200 (issue 11 session 9).
    Shared,
    /// The late way in every format (`late`).
    Late,
}

impl NormFold {
    /// Whether a step folds whose model holds an NF4 linear (`any_nf4`) or none, and whose launches
    /// take the late way's kernels (`late_fits`: one row of 16-bit activations) or not. The default
    /// folds only where it was measured to pay.
    pub fn folds(self, any_nf4: bool, late_fits: bool) -> bool {
        match self {
            Self::Auto => !any_nf4 && late_fits,
            Self::Off => false,
            Self::Shared | Self::Late => true,
        }
    }

    /// Whether a folded norm takes the late way.
    pub fn late(self) -> bool {
        self != Self::Shared
    }
}

const FOLDS: [NormFold; 4] = [NormFold::Auto, NormFold::Off, NormFold::Shared, NormFold::Late];
static FUSE_NORM: Choice = Choice::new("MINILAB_FUSE_NORM", &["auto", "0", "1", "late"]);

/// The fold in force ([`NormFold`]).
pub fn norm_fold() -> NormFold {
    FOLDS[FUSE_NORM.get()]
}

/// Picks the fold for the rest of the process, whatever `MINILAB_FUSE_NORM` says.
pub fn set_norm_fold(fold: NormFold) {
    FUSE_NORM.set(FOLDS.iter().position(|&f| f == fold).unwrap_or(0));
}

/// Whether a decode step of `rows` sequences in `dtype` on `device` folds its norms and residual
/// adds into the launches next to them ([`NormRef`], [`linear_residual`]): on the GPU, as
/// [`NormFold::folds`] says for a step whose model holds an NF4 linear (`any_nf4`) or none.
pub fn fold_norms(device: &candle_core::Device, dtype: candle_core::DType, rows: usize, any_nf4: bool) -> bool {
    let late_fits = rows == 1 && matches!(dtype, candle_core::DType::F16 | candle_core::DType::BF16);
    device.is_cuda() && enabled() && norm_fold().folds(any_nf4, late_fits)
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

/// What a multi-weight launch writes: each output, silu(gate)·up, or q with RoPE and the KV writes.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
enum Epi<'a> {
    Plain,
    SiluMul,
    Rope(RopeKvRefs<'a>),
    Residual(&'a Tensor),
}

#[cfg(feature = "cuda")]
fn fuses(format: Format, dtype: candle_core::DType, rows: usize, epi: Epi<'_>) -> bool {
    use super::cuda::{Epilogue, RopeArg};
    let epi = match epi {
        Epi::Plain => Epilogue::Plain,
        Epi::SiluMul => Epilogue::SiluMul,
        Epi::Rope(_) => Epilogue::Rope(RopeArg::default()),
        Epi::Residual(_) => Epilogue::Residual(0),
    };
    super::cuda::epilogue_fuses(format, dtype, rows, epi)
}

#[cfg(not(feature = "cuda"))]
fn fuses(_: Format, _: candle_core::DType, _: usize, _: Epi<'_>) -> bool {
    false
}

/// Each weight's `(n, k)`, and the `k` they share.
type ManyDims = (Vec<(usize, usize)>, usize);

/// The weights' dims where one GEMV launch takes `ws` against `xs` (and normalizes xs first, with
/// `norm`).
fn many_applies(xs: &Tensor, ws: &[WeightRef<'_>], norm: Option<NormRef<'_>>) -> Result<Option<ManyDims>> {
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
    let norm_ok = norm.is_none_or(|n| {
        norm_fold() != NormFold::Off
            && norm_fits(xs.dtype(), rows, k)
            && n.weight.elem_count() == k
            && n.weight.dtype() == xs.dtype()
            && n.weight.device().same_device(xs.device())
    });
    Ok((applies && norm_ok).then_some((dims, k)))
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
fn many_cuda(
    xs: &Tensor,
    ws: &[WeightRef<'_>],
    (dims, k): (&[(usize, usize)], usize),
    (epi, norm): (Epi<'_>, Option<NormRef<'_>>),
) -> Result<Vec<Tensor>> {
    use super::cuda::{decode as gpu, Epilogue, NormArg};
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
    let norm_w = norm.map(|n| n.weight.contiguous()).transpose()?;
    let extra: Vec<&Tensor> = norm_w.iter().chain(if let Epi::Residual(r) = epi { Some(r) } else { None }).collect();
    let ys = gpu::with_addresses(&extra, |ptrs| {
        // the late way reads the norm's weight 16 bytes at a time
        let norm =
            norm.map(|n| NormArg { w: ptrs[0], eps: n.eps, late: norm_fold().late() && ptrs[0].is_multiple_of(16) });
        let launch = |e| super::cuda::gemv_parts(ws[0].format(), (cuda(&xs_storage)?, xs_layout), &parts, k, e, norm);
        match epi {
            Epi::Plain => launch(Epilogue::Plain),
            Epi::SiluMul => launch(Epilogue::SiluMul),
            Epi::Residual(_) => launch(Epilogue::Residual(ptrs[ptrs.len() - 1])),
            Epi::Rope(r) => {
                let (_, kv_heads, cap, d) = r.caches[0].dims4()?;
                let s = gpu::RopeKv { b: rows, t: 1, heads: r.heads, kv_heads, cap, d };
                gpu::with_rope_arg(&s, r.tables, r.pos, r.caches, |arg| launch(Epilogue::Rope(arg)))
            }
        }
    })?;
    let outs = if matches!(epi, Epi::Plain) { dims } else { &dims[..1] };
    let total: usize = outs.iter().map(|d| d.0).sum();
    split_parts(&Tensor::from_storage(Storage::Cuda(ys), rows * total, BackpropOp::none(), false), xs.dims(), outs)
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
fn many_cuda(
    _: &Tensor,
    _: &[WeightRef<'_>],
    _: (&[(usize, usize)], usize),
    _: (Epi<'_>, Option<NormRef<'_>>),
) -> Result<Vec<Tensor>> {
    candle_core::bail!("linear kernel: built without CUDA")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step with an NF4 linear, f32 activations or several rows folds only when asked to; every
    /// fold but `=1` is late; the choice set is the one read, and goes back as it was found.
    #[test]
    fn auto_folds_late_where_no_linear_is_nf4() {
        use NormFold::*;
        let folds = |nf4, fits| FOLDS.map(|f| f.folds(nf4, fits));
        assert_eq!(folds(false, true), [true, false, true, true]);
        assert_eq!(folds(true, true), [false, false, true, true]);
        // f32 activations or several rows: the default keeps the unfolded step
        assert_eq!(folds(false, false), [false, false, true, true]);
        assert_eq!(FOLDS.map(NormFold::late), [true, true, false, true]);
        let found = norm_fold();
        for f in [Off, Shared, Late, Auto] {
            set_norm_fold(f);
            assert_eq!(norm_fold(), f);
        }
        assert!(!fold_norms(&candle_core::Device::Cpu, candle_core::DType::BF16, 1, false), "no step folds on the CPU");
        set_norm_fold(found);
    }
}
