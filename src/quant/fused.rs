//! The decode launches that read several layers at once or do more than one product (q/k/v,
//! gate/up with silu·up, q/k/v with RoPE, the residual add and the norms folded beside them), with
//! the plain layers and candle's ops where no such launch applies.

use super::SwitchableLinear;
use crate::kernels;
use candle_core::{Module, Result, Tensor};

impl SwitchableLinear {
    /// `layer.forward(xs)` for each of `layers`, which share `xs`: on a GPU, at decode, one launch
    /// reads every weight when all are in one format (q/k/v, gate/up); otherwise one by one.
    pub fn forward_many(layers: &[&SwitchableLinear], xs: &Tensor) -> Result<Vec<Tensor>> {
        Self::forward_many_normed(layers, xs, None)
    }

    /// [`Self::forward_many`] of `xs`, or with `norm` of RMSNorm(xs)·weight: then one launch that
    /// also normalizes where it applies ([`kernels::NormRef`], opt-in), else candle's norm first.
    pub fn forward_many_normed(
        layers: &[&SwitchableLinear],
        xs: &Tensor,
        norm: Option<kernels::NormRef<'_>>,
    ) -> Result<Vec<Tensor>> {
        let weights: Option<Vec<kernels::WeightRef<'_>>> = layers.iter().map(|l| l.weight_ref()).collect();
        if let Some(weights) = weights {
            if let Some(ys) = kernels::linear_many(xs, &weights, norm)? {
                return Ok(ys);
            }
        }
        if let Some(n) = norm {
            return Self::forward_many(layers, &rms_norm(xs, n)?);
        }
        layers.iter().map(|l| l.forward(xs)).collect()
    }

    /// `silu(gate.forward(xs))·up.forward(xs)`, the MLP's activation: on a GPU, at decode, one
    /// launch when both are in one format and shape; otherwise the two layers and
    /// [`kernels::decode::silu_mul`]. With `norm`, of RMSNorm(xs)·weight, as
    /// [`Self::forward_many_normed`].
    pub fn forward_silu_mul(
        gate: &SwitchableLinear,
        up: &SwitchableLinear,
        xs: &Tensor,
        norm: Option<kernels::NormRef<'_>>,
    ) -> Result<Tensor> {
        if let (Some(g), Some(u)) = (gate.weight_ref(), up.weight_ref()) {
            if let Some(ys) = kernels::linear_silu_mul(xs, g, u, norm)? {
                return Ok(ys);
            }
        }
        if let Some(n) = norm {
            return Self::forward_silu_mul(gate, up, &rms_norm(xs, n)?, None);
        }
        let [g, u]: [Tensor; 2] = Self::forward_many(&[gate, up], xs)?
            .try_into()
            .map_err(|_| candle_core::Error::Msg("mlp: gate/up projections".into()))?;
        kernels::decode::silu_mul(&g, &u)
    }

    /// q/k/v of one new token, rotated and written into the caches in one GPU launch
    /// ([`kernels::linear_qkv_rope`], opt-in) → q `[b, heads, 1, d]`; `None` where that launch does
    /// not apply, and the caller runs [`Self::forward_many`] and [`kernels::decode::rope_kv`]. With
    /// `norm`, xs is normalized first in the same launch, or `None`.
    pub fn forward_qkv_rope(
        layers: [&SwitchableLinear; 3],
        xs: &Tensor,
        rope: kernels::RopeKvRefs<'_>,
        norm: Option<kernels::NormRef<'_>>,
    ) -> Result<Option<Tensor>> {
        let [Some(q), Some(k), Some(v)] = layers.map(|l| l.weight_ref()) else { return Ok(None) };
        kernels::linear_qkv_rope(xs, [q, k, v], rope, norm)
    }

    /// `res + self.forward(xs)`: on a GPU, at decode, the add in the product's launch
    /// ([`kernels::linear_residual`], opt-in).
    pub fn forward_residual(&self, xs: &Tensor, res: &Tensor) -> Result<Tensor> {
        if let Some(w) = self.weight_ref() {
            if let Some(ys) = kernels::linear_residual(xs, w, res)? {
                return ys.reshape(res.shape());
            }
        }
        res + self.forward(xs)?
    }

    /// [`Self::forward_residual`] before the norm `next`: on a GPU, at decode, under the stats way,
    /// the launch also hands that norm its statistics for the launch after it
    /// ([`kernels::linear_residual_stats`]); otherwise none.
    pub fn forward_residual_stats(
        &self,
        xs: &Tensor,
        res: &Tensor,
        next: kernels::NormRef<'_>,
    ) -> Result<(Tensor, Option<kernels::NormStats>)> {
        if let Some(w) = self.weight_ref() {
            if let Some((ys, stats)) = kernels::linear_residual_stats(xs, w, res, next)? {
                return Ok((ys.reshape(res.shape())?, Some(stats)));
            }
        }
        Ok((self.forward_residual(xs, res)?, None))
    }

    /// While the returned scope lives, the one-row GPU launches of this thread also ask L2 for the
    /// weights of `next`, the layers the following launch reads ([`kernels::prefetch`], opt-in).
    pub fn prefetch(next: &[&SwitchableLinear]) -> Result<kernels::prefetch::Scope> {
        kernels::prefetch::next(next.iter().filter_map(|l| l.weight_ref()))
    }
}

/// RMSNorm(xs)·weight with candle's op: the path where no launch folds the norm in.
fn rms_norm(xs: &Tensor, norm: kernels::NormRef<'_>) -> Result<Tensor> {
    candle_nn::ops::rms_norm(xs, norm.weight, norm.eps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Precision;
    use candle_core::{DType, Device};

    /// Off the GPU the gate/up + silu path is the two layers and candle's silu·mul, in every precision.
    #[test]
    fn forward_silu_mul_is_silu_of_gate_times_up() -> Result<()> {
        let dev = Device::Cpu;
        let layer = |seed: f32| -> Result<SwitchableLinear> {
            let w = ((Tensor::arange(0f32, 48.0 * 64.0, &dev)?.reshape((48, 64))? * 0.37)? + f64::from(seed))?.sin()?;
            SwitchableLinear::new((w * 0.05)?, None, &dev, DType::F32)
        };
        let (mut gate, mut up) = (layer(0.0)?, layer(1.0)?);
        let xs = Tensor::arange(0f32, 2.0 * 64.0, &dev)?.reshape((1, 2, 64))?.cos()?;
        for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
            gate.set_precision(p)?;
            up.set_precision(p)?;
            let got = SwitchableLinear::forward_silu_mul(&gate, &up, &xs, None)?;
            let want = (candle_nn::ops::silu(&gate.forward(&xs)?)? * up.forward(&xs)?)?;
            assert_eq!(got.dims(), &[1, 2, 48]);
            let diff = (got - want)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff == 0.0, "{p}: max |Δ| {diff}");
        }
        Ok(())
    }

    /// Off the GPU a residual launch before a norm is the plain add and hands on no statistics: the
    /// norm after it then takes candle's op on the residual.
    #[test]
    fn forward_residual_stats_off_the_gpu_is_the_plain_add() -> Result<()> {
        let dev = Device::Cpu;
        let w = (Tensor::arange(0f32, 32.0 * 16.0, &dev)?.reshape((32, 16))? * 0.11)?.sin()?;
        let layer = SwitchableLinear::new(w, None, &dev, DType::F32)?;
        let xs = Tensor::arange(0f32, 16.0, &dev)?.reshape((1, 1, 16))?.cos()?;
        let res = Tensor::arange(0f32, 32.0, &dev)?.reshape((1, 1, 32))?.sin()?;
        let norm_w = Tensor::ones(32, DType::F32, &dev)?;
        // the fold in force, left alone: another test may be setting it
        let (ys, stats) = layer.forward_residual_stats(&xs, &res, kernels::NormRef::new(&norm_w, 1e-5))?;
        let want = (&res + layer.forward(&xs)?)?;
        assert!(stats.is_none());
        assert_eq!(ys.dims(), res.dims());
        assert_eq!((ys - want)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        Ok(())
    }
}
