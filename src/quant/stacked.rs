//! Layers that read one input (a block's q/k/v) with their weights in one device buffer, so that a
//! prompt multiplies them in one GEMM instead of three. The short products are what a GPU fills
//! worst: on an H100 at 512 prompt rows the 3B's q, k and v in int8 take 26 + 18 + 18 µs apart and
//! 34 µs stacked; at 128 rows 55 against 18.5; cuBLAS on bf16 43 against 26 (mixed_bench --fused,
//! BENCHMARKS.md, issue 11 session 16). The layers keep their own `SwitchableLinear`s: each one's
//! weight becomes a view of the stack, so the stack costs no memory, and every layer still switches
//! alone. A switch makes the stack stale (its stamp check), and the model stacks again or gives the
//! other layers copies of their own ([`Stacked::release`]).

use super::linear::SwitchableLinear;
use crate::kernels;
use crate::switch::Choice;
use candle_core::{Device, Module, Result, Tensor, D};

/// `MINILAB_STACK_QKV`: unset (or `auto`), layers on a GPU stack, where a whole prompt measured 1.05–
/// 1.21× faster stacked (H100, issue 11 session 17); `1` stacks on every device, `0` on none. The
/// CPU does not stack by default: a dense weight there shares the host master's storage, which a
/// stack would copy.
static STACK: Choice = Choice::new("MINILAB_STACK_QKV", WORDS);

/// What `MINILAB_STACK_QKV` takes, the default first.
pub const WORDS: &[&str] = &["auto", "0", "1"];

/// Whether layers on `device` are stacked.
pub fn stacks_on(device: &Device) -> bool {
    match STACK.get() {
        0 => device.is_cuda(),
        i => i == 2,
    }
}

/// Turns stacking on or off on every device for the rest of the process (for layers stacked from
/// then on), whatever the variable says.
pub fn set_stacking(on: bool) {
    STACK.set(if on { 2 } else { 1 });
}

/// Several layers' weights in one buffer, and which encodings of theirs it holds.
#[derive(Debug, Clone)]
pub struct Stacked {
    /// The stacked weight `[Σ n_i, k]` as one layer without master or bias.
    linear: SwitchableLinear,
    /// Each layer's output width, in order.
    widths: Vec<usize>,
    /// Each layer's encoding stamp when stacked.
    stamps: Vec<u64>,
}

impl Stacked {
    /// Stacks `layers` when they share format, input width, device and dtypes, have no bias and each
    /// one's tensors would start on a 16-byte boundary: their weights become views of one new buffer.
    /// `None` (the layers untouched) otherwise.
    pub fn build(layers: &mut [&mut SwitchableLinear]) -> Result<Option<Self>> {
        let Some(first) = layers.first() else { return Ok(None) };
        if layers.len() < 2 || !layers.iter().all(|l| l.stackable_with(first)) {
            return Ok(None);
        }
        let widths: Vec<usize> = layers.iter().map(|l| l.shape().0).collect();
        // each layer's first row in the stack
        let starts: Vec<usize> = widths.iter().scan(0, |row, n| Some(std::mem::replace(row, *row + n))).collect();
        if !layers.iter().zip(&starts).all(|(l, row)| l.aligned_from_row(*row)) {
            return Ok(None);
        }
        let refs: Vec<&SwitchableLinear> = layers.iter().map(|l| &**l).collect();
        let linear = SwitchableLinear::stack(&refs)?;
        for ((l, row), n) in layers.iter_mut().zip(&starts).zip(&widths) {
            l.view_rows_of(&linear, *row, *n)?;
        }
        let stamps = layers.iter().map(|l| l.stamp()).collect();
        Ok(Some(Self { linear, widths, stamps }))
    }

    /// Whether `layers` are still the encodings this stack holds.
    pub fn holds(&self, layers: &[&SwitchableLinear]) -> bool {
        layers.len() == self.stamps.len() && layers.iter().zip(&self.stamps).all(|(l, s)| l.stamp() == *s)
    }

    /// Each layer's `forward(xs)` from one product, where the layers would otherwise run one by one
    /// (a prompt's rows; on the GPU the decode launches already read all three at once). `None`
    /// where that does not apply, when a layer switched since the stack was built, or while stacking
    /// is off (then the layers run apart on their views: `device_check cuda stack` times both ways
    /// on one model).
    pub fn forward(&self, layers: &[&SwitchableLinear], xs: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let k = self.linear.shape().1;
        let rows = xs.elem_count() / k.max(1);
        if !stacks_on(xs.device())
            || !self.holds(layers)
            || (xs.device().is_cuda() && rows <= kernels::cpu::GEMV_MAX_ROWS)
        {
            return Ok(None);
        }
        // (…, k) → (…, Σ n_i), then each layer's columns: views, which the attention's fused RoPE
        // reads in place (three copies cost a 3B block more than the stacking saves, H100)
        let ys = self.linear.forward(xs)?;
        let mut start = 0;
        let mut out = Vec::with_capacity(self.widths.len());
        for n in &self.widths {
            out.push(ys.narrow(D::Minus1, start, *n)?);
            start += n;
        }
        Ok(Some(out))
    }

    /// Gives each layer still viewing this stack a copy of its own weight, so that dropping the stack
    /// frees the buffer (a view keeps the whole of it alive).
    pub fn release(self, layers: &mut [&mut SwitchableLinear]) -> Result<()> {
        for (l, s) in layers.iter_mut().zip(&self.stamps) {
            if l.stamp() == *s {
                l.own_copy()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Precision;
    use candle_core::{DType, Device};

    fn layer(n: usize, k: usize, seed: f32) -> Result<SwitchableLinear> {
        // the tests of this binary that stack want the stack used (no test turns it off)
        set_stacking(true);
        let dev = Device::Cpu;
        let w = ((Tensor::arange(0f32, (n * k) as f32, &dev)?.reshape((n, k))? * 0.37)? + f64::from(seed))?.sin()?;
        SwitchableLinear::new((w * 0.05)?, None, &dev, DType::F32)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    /// In every format the stacked product gives each layer's own output, bit for bit, and the
    /// layers' weights (now views) are unchanged.
    #[test]
    fn a_stack_gives_each_layer_its_own_output() -> Result<()> {
        let xs = Tensor::arange(0f32, 12.0 * 128.0, &Device::Cpu)?.reshape((1, 12, 128))?.cos()?;
        for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
            let (mut q, mut k, mut v) = (layer(64, 128, 0.0)?, layer(32, 128, 1.0)?, layer(32, 128, 2.0)?);
            for l in [&mut q, &mut k, &mut v] {
                l.set_precision(p)?;
            }
            let want: Vec<Tensor> = [&q, &k, &v].iter().map(|l| l.forward(&xs)).collect::<Result<_>>()?;
            let weights: Vec<Tensor> = [&q, &k, &v].iter().map(|l| l.weight()).collect::<Result<_>>()?;
            let s = Stacked::build(&mut [&mut q, &mut k, &mut v])?.expect("one format, one width");
            let got = s.forward(&[&q, &k, &v], &xs)?.expect("the stack holds them");
            for (i, l) in [&q, &k, &v].iter().enumerate() {
                assert_eq!(got[i].dims(), want[i].dims());
                assert_eq!(max_diff(&got[i], &want[i])?, 0.0, "{p}: layer {i} stacked");
                assert_eq!(max_diff(&l.forward(&xs)?, &want[i])?, 0.0, "{p}: layer {i} as a view");
                assert_eq!(max_diff(&l.weight()?, &weights[i])?, 0.0, "{p}: layer {i}'s weight");
            }
        }
        Ok(())
    }

    /// A layer that switches leaves the stack stale (no stacked output, never a wrong one); releasing
    /// gives the others their own weights, equal to what they viewed. Layers that do not fit one
    /// buffer stay apart.
    #[test]
    fn a_switch_makes_the_stack_stale_and_release_keeps_the_others() -> Result<()> {
        let xs = Tensor::arange(0f32, 10.0 * 64.0, &Device::Cpu)?.reshape((10, 64))?.sin()?;
        let (mut q, mut k, mut v) = (layer(32, 64, 0.5)?, layer(16, 64, 1.5)?, layer(16, 64, 2.5)?);
        for l in [&mut q, &mut k, &mut v] {
            l.set_precision(Precision::Int8)?;
        }
        let s = Stacked::build(&mut [&mut q, &mut k, &mut v])?.expect("stackable");
        let before = k.forward(&xs)?;
        q.set_precision(Precision::Nf4)?;
        assert!(!s.holds(&[&q, &k, &v]));
        assert!(s.forward(&[&q, &k, &v], &xs)?.is_none());
        s.release(&mut [&mut q, &mut k, &mut v])?;
        assert_eq!(max_diff(&k.forward(&xs)?, &before)?, 0.0);
        // mixed formats, or another input width, do not stack
        assert!(Stacked::build(&mut [&mut q, &mut k, &mut v])?.is_none());
        let mut wide = layer(16, 32, 0.0)?;
        wide.set_precision(Precision::Int8)?;
        assert!(Stacked::build(&mut [&mut k, &mut wide])?.is_none());
        // nor layers the GPU could not read from the stack: the second's codes would start at byte 36
        let (mut a, mut b) = (layer(3, 12, 0.0)?, layer(2, 12, 1.0)?);
        for l in [&mut a, &mut b] {
            l.set_precision(Precision::Int8)?;
        }
        assert!(Stacked::build(&mut [&mut a, &mut b])?.is_none());
        let (mut a, mut b) = (layer(4, 16, 0.0)?, layer(2, 16, 1.0)?);
        for l in [&mut a, &mut b] {
            l.set_precision(Precision::Int8)?;
        }
        assert!(Stacked::build(&mut [&mut a, &mut b])?.is_some());
        Ok(())
    }
}
