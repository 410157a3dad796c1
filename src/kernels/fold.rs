//! Folding a decode step's RMSNorms and residual adds into the GEMV launches beside them
//! (`MINILAB_FUSE_NORM`): which way a step folds, what a folded norm takes ([`NormRef`]), and the
//! residual launches, which under the stats way also hand the next norm its statistics
//! ([`NormStats`]).

use super::many::{many_applies, many_cuda, Epi};
use super::op::{aligned, enabled};
use super::params::Format;
use super::WeightRef;
use crate::switch::Choice;
use candle_core::{DType, Device, Result, Tensor};

/// How a decode step folds its norms and residual adds into the launches beside them
/// (`MINILAB_FUSE_NORM`).
///
/// - The late way: the one-row 16-bit launches after a norm take the gemv_ln_ kernels, whose warps
///   multiply xs by the norm's weight and sum its squares as they load it, and scale their products
///   by the RMS factor at the end, so no block waits for a normalizing pass before its first weight
///   load (what made `=1` slower).
/// - The stats way: the residual launch before a norm also stores xw = res·w and each block's sum
///   of squares; the launch after it (gemv_ns_) multiplies xw as the plain kernels multiply xs, sums
///   those partial sums in a fixed order and scales at the end. Its warps then carry neither the
///   norm weight's loads nor the squares, which cost the late way's NF4 launches most. A block's
///   first norm, which no launch of the step produces, takes the late way.
///
/// Both use xs·w unrounded by the RMS factor, where `=1` rounds the normalized xs to 16 bits first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormFold {
    /// The stats way where the step is one row of 16-bit activations (what its kernels take), else
    /// no fold (the default, `auto`). On the H100, against the unfolded step, it took decode up
    /// 4.7 / 7.0 / 8.1 % (f16 / int8 / NF4) on the 3B and 3.3 / 5.5 / 6.0 % on the 8B, past the
    /// late way in every format (BENCHMARKS.md, issue 11 session 27).
    Auto,
    /// No fold (`0`).
    Off,
    /// Each block normalizes xs into shared memory before its first weight load (`1`): 13–16 %
    /// slower on the H200 (issue 11 session 9).
    Shared,
    /// The late way in every format (`late`). On the H100 it took f16 and int8 decode up 2–7 % on
    /// the 3B and the 8B, NF4 up 3 % on the 3B but down 3.4 % on the 8B (BENCHMARKS.md, issue 11
    /// session 26).
    Late,
    /// The stats way wherever its kernels apply, the late way elsewhere (`stats`).
    Stats,
}

impl NormFold {
    /// Whether a step folds whose launches take the late and stats ways' kernels (`fits`: one row of
    /// 16-bit activations) or not. The default folds only where it was measured to pay.
    pub fn folds(self, fits: bool) -> bool {
        match self {
            Self::Auto => fits,
            Self::Off => false,
            Self::Shared | Self::Late | Self::Stats => true,
        }
    }

    /// Whether a folded norm takes the late way where it takes no stats.
    pub fn late(self) -> bool {
        self != Self::Shared
    }

    /// Whether the residual launches before a norm hand it their statistics.
    pub fn stats(self) -> bool {
        matches!(self, Self::Auto | Self::Stats)
    }
}

const FOLDS: [NormFold; 5] = [NormFold::Auto, NormFold::Off, NormFold::Shared, NormFold::Late, NormFold::Stats];
static FUSE_NORM: Choice = Choice::new("MINILAB_FUSE_NORM", &["auto", "0", "1", "late", "stats"]);

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
/// [`NormFold::folds`] says.
pub fn fold_norms(device: &Device, dtype: DType, rows: usize) -> bool {
    let fits = rows == 1 && matches!(dtype, DType::F16 | DType::BF16);
    device.is_cuda() && enabled() && norm_fold().folds(fits)
}

/// RMSNorm folded into a decode launch: xs is the residual stream `[1, k]`, normalized with `eps`
/// and scaled by `weight` `[k]` (xs' dtype) before the products, the way [`NormFold`] says. With
/// `stats`, from the residual launch that wrote xs ([`linear_residual_stats`]), the launch takes the
/// stats way where it can; it falls back to the others on xs and `weight`.
#[derive(Debug, Clone, Copy)]
pub struct NormRef<'a> {
    pub weight: &'a Tensor,
    pub eps: f32,
    pub stats: Option<&'a NormStats>,
}

impl<'a> NormRef<'a> {
    /// The norm of `weight` with `eps`, without statistics.
    pub fn new(weight: &'a Tensor, eps: f32) -> Self {
        Self { weight, eps, stats: None }
    }
}

/// What a residual launch leaves the norm after it under the stats way: `xw` = res·weight (shaped
/// as res, its dtype) and one f32 partial sum of res² for each of the launch's blocks.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub struct NormStats {
    pub(super) xw: Tensor,
    pub(super) partials: Tensor,
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
impl NormStats {
    /// Whether a launch over `xs` (one row of `k`) can take these statistics in its place.
    pub(super) fn fit(&self, xs: &Tensor, k: usize) -> bool {
        self.xw.dims() == xs.dims()
            && self.xw.dtype() == xs.dtype()
            && xs.elem_count() == k
            && matches!(xs.dtype(), DType::F16 | DType::BF16)
    }
}

/// `res + xs·Wᵀ` `[…, n]` in one GPU launch at decode (o_proj and down_proj with the residual add,
/// rounded as [`super::decode::add_rms_norm`] rounds it), where the decode step folds
/// ([`fold_norms`]); `None` where it does not apply or `MINILAB_FUSE_NORM=0`.
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

/// [`linear_residual`] before the norm `next`, which the launch also hands its statistics under the
/// stats way ([`NormFold::stats`]): `(res + xs·Wᵀ, NormStats)`, for a launch after it that takes
/// `NormRef { stats, .. }`. `None` where that launch does not apply (one row of 16-bit xs, the
/// norm's weight as long as the output).
pub fn linear_residual_stats(
    xs: &Tensor,
    w: WeightRef<'_>,
    res: &Tensor,
    next: NormRef<'_>,
) -> Result<Option<(Tensor, NormStats)>> {
    if !norm_fold().stats() {
        return Ok(None);
    }
    let Some((dims, k)) = many_applies(xs, &[w], None)? else { return Ok(None) };
    let (n, rows, dtype) = (dims[0].0, xs.elem_count() / k, xs.dtype());
    let same = |t: &Tensor| t.elem_count() == n && t.dtype() == dtype && t.device().same_device(xs.device());
    if !stats_fits(w.format(), dtype, rows, n) || !same(res) || !same(next.weight) {
        return Ok(None);
    }
    // SAFETY: the launch writes every element of both: xw's n, and one partial a block.
    let stats = unsafe {
        NormStats {
            xw: Tensor::empty(res.shape(), dtype, xs.device())?,
            partials: Tensor::empty(stats_blocks(w.format(), dtype, n), DType::F32, xs.device())?,
        }
    };
    let (res, next_w) = (res.contiguous()?, next.weight.contiguous()?);
    let epi = Epi::ResidualStats { res: &res, next: &next_w, out: &stats };
    let ys = many_cuda(&aligned(xs)?, &[w], (&dims, k), (epi, None))?.pop();
    Ok(ys.map(|ys| (ys, stats)))
}

#[cfg(feature = "cuda")]
fn stats_fits(format: Format, dtype: DType, rows: usize, n: usize) -> bool {
    super::cuda::stats_fits(format, dtype, rows, n)
}

#[cfg(not(feature = "cuda"))]
fn stats_fits(_: Format, _: DType, _: usize, _: usize) -> bool {
    false
}

#[cfg(feature = "cuda")]
fn stats_blocks(format: Format, dtype: DType, n: usize) -> usize {
    super::cuda::stats_blocks(format, dtype, n)
}

#[cfg(not(feature = "cuda"))]
fn stats_blocks(_: Format, _: DType, _: usize) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default folds one row of 16-bit activations only; every fold but `=1` is late, and the
    /// default and `stats` hand statistics on; the choice set is the one read, and goes back as it
    /// was found.
    #[test]
    fn auto_folds_one_row_of_16_bit_activations() {
        use NormFold::*;
        assert_eq!(FOLDS.map(|f| f.folds(true)), [true, false, true, true, true]);
        // f32 activations or several rows: the default keeps the unfolded step
        assert_eq!(FOLDS.map(|f| f.folds(false)), [false, false, true, true, true]);
        assert_eq!(FOLDS.map(NormFold::late), [true, true, false, true, true]);
        assert_eq!(FOLDS.map(NormFold::stats), [true, false, false, false, true]);
        let found = norm_fold();
        for f in [Off, Shared, Late, Stats, Auto] {
            set_norm_fold(f);
            assert_eq!(norm_fold(), f);
        }
        assert!(!fold_norms(&Device::Cpu, DType::BF16, 1), "no step folds on the CPU");
        set_norm_fold(found);
    }
}
