//! `device_check cuda prefill [MODEL]`: the fused prefill (the default, `kernels::prefill_ops`)
//! against the plain path (`MINILAB_FUSE_PREFILL=0`) on the same GPU; it leaves the process fused.
//!
//! 1. `heads_to_rows` against candle's transpose, bit for bit (it only moves bytes).
//! 2. The synthetic 1B in f32, every format: a 2 × 64-token prompt, 7 more tokens after it, one
//!    decode step, and a 96-token window scored without a cache; logits within 1e-4 of the plain
//!    path's (relative to the largest), which only rounding can explain in f32.
//! 3. MODEL (default the 3B) in bf16, every format: the prompt's logits both ways (max |Δ|, argmax
//!    agreement), then pp512 to the last position's logits timed both ways, alternating, ms (median).

use candle_core::{DType, Device, Tensor};
use minilab::kernels::prefill_ops;
use minilab::model::{self, Cache, ModelSpec};
use minilab::quant::Precision;
use std::time::Instant;

use super::{argmax, median, rel_err, set_uniform, timed_model, within, worse, FORMATS};

/// `[rows, n]` token ids below `vocab`, spread as real text's are.
pub(super) fn ids(dev: &Device, vocab: usize, (rows, n): (usize, usize), salt: u32) -> candle_core::Result<Tensor> {
    let top = vocab.clamp(2, 100_000) as u32 - 1;
    let v: Vec<u32> = (0..(rows * n) as u32).map(|i| 1 + ((i + salt) * 7919 + 13) % top).collect();
    Tensor::from_vec(v, (rows, n), dev)
}

fn check_heads_to_rows(dev: &Device) -> minilab::Result<()> {
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for (b, heads, t, d) in [(1, 24, 512, 128), (2, 32, 7, 128), (1, 9, 33, 64), (3, 2, 1, 8)] {
            let ys = Tensor::randn(0f32, 1.0, (b, heads, t, d), dev)?.to_dtype(dtype)?;
            let got = prefill_ops::heads_to_rows(&ys)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let want = ys.transpose(1, 2)?.reshape((b, t, heads * d))?;
            let want = want.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let differ = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            println!("heads_to_rows {dtype:?} {b}×{heads}×{t}×{d}: {differ} of {} elements differ", want.len());
            if differ > 0 {
                return Err(minilab::Error::Runtime("heads_to_rows moved elements wrongly".into()));
            }
        }
    }
    Ok(())
}

/// Logits of the calls in the module's item 2 after `set(on)` (fused or not, stacked or not).
fn f32_calls(m: &model::Model, dev: &Device, set: impl Fn(bool), on: bool) -> minilab::Result<Vec<Tensor>> {
    set(on);
    let vocab = m.config().vocab_size;
    let mut cache = Cache::new(m.n_blocks());
    let mut out = vec![m.forward(&ids(dev, vocab, (2, 64), 0)?, 0, &mut cache)?];
    out.push(m.forward(&ids(dev, vocab, (2, 7), 1)?, 64, &mut cache)?);
    out.push(m.forward(&ids(dev, vocab, (2, 1), 2)?, 71, &mut cache)?);
    out.push(m.forward(&ids(dev, vocab, (1, 96), 3)?, 0, &mut Cache::scoring())?);
    Ok(out)
}

/// The synthetic 1B in f32, every format (set with `set(true)`, which `note` may describe or refuse):
/// item 2's calls with `set(true)` within 1e-4 of `set(false)`'s. Leaves `set(true)`.
pub(super) fn check_f32_ab(
    dev: &Device,
    set: impl Fn(bool) + Copy,
    what: &str,
    note: impl Fn(&model::Model, Precision) -> minilab::Result<String>,
) -> minilab::Result<()> {
    let mut loaded = model::load(&ModelSpec::Synthetic("llama-3.2-1b".into()), dev, DType::F32)?;
    let mut worst = 0f32;
    for p in FORMATS {
        set(true);
        set_uniform(&mut loaded.model, p)?;
        let note = note(&loaded.model, p)?;
        let off = f32_calls(&loaded.model, dev, set, false)?;
        let on = f32_calls(&loaded.model, dev, set, true)?;
        let errs = on.iter().zip(&off).map(|(a, b)| rel_err(a, b)).collect::<minilab::Result<Vec<_>>>()?;
        errs.iter().for_each(|&e| worst = worse(worst, e));
        println!(
            "1B f32 {p}{note}: prompt / continuation / step / scored window {:.1e} / {:.1e} / {:.1e} / {:.1e}",
            errs[0], errs[1], errs[2], errs[3]
        );
    }
    set(true);
    within(worst, 1e-4, what)
}

/// ms of one pp512 to the last position's logits (median of 5 after a warm-up), the switches as set.
pub(super) fn pp_ms(m: &model::Model, dev: &Device, prompt: &Tensor) -> minilab::Result<f64> {
    Ok(timed(dev, || m.forward_last(prompt, 0, &mut Cache::new(m.n_blocks())).map(drop))?.0)
}

/// Runs `f` 6 times after a synchronize, the first untimed: median ms in all, and median ms until `f`
/// returned (the host's issue time).
pub(super) fn timed(dev: &Device, f: impl Fn() -> candle_core::Result<()>) -> minilab::Result<(f64, f64)> {
    let (mut total, mut issued) = (Vec::new(), Vec::new());
    for i in 0..6 {
        dev.synchronize()?;
        let t = Instant::now();
        f()?;
        let host = t.elapsed().as_secs_f64() * 1e3;
        dev.synchronize()?;
        if i > 0 {
            issued.push(host);
            total.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((median(&mut total), median(&mut issued)))
}

/// A model's `tokens`-token prompt two ways, `set(false)` then `set(true)`: the logits' max |Δ|, the
/// largest |logit| of the first way, argmax agreement of the positions, then the prompt's ms each way
/// (alternating, median of 3). The switch is left as `set(true)` left it.
pub(super) struct PromptAb {
    pub diff: f32,
    pub top: f32,
    pub agree: usize,
    pub ms: [f64; 2],
}

pub(super) fn prompt_ab(
    m: &model::Model,
    dev: &Device,
    tokens: usize,
    set: impl Fn(bool),
) -> minilab::Result<PromptAb> {
    let prompt = ids(dev, m.config().vocab_size, (1, tokens), 5)?;
    let logits = |on| -> minilab::Result<Vec<Vec<f32>>> {
        set(on);
        let out = m.forward(&prompt, 0, &mut Cache::new(m.n_blocks()))?;
        Ok(out.squeeze(0)?.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    };
    let (off, on) = (logits(false)?, logits(true)?);
    let agree = off.iter().zip(&on).filter(|(a, b)| argmax(a) == argmax(b)).count();
    let diff = off.iter().flatten().zip(on.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, worse);
    let top = off.iter().flatten().map(|x| x.abs()).fold(0f32, worse);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        for (on, t) in [false, true].into_iter().zip(&mut times) {
            set(on);
            t.push(pp_ms(m, dev, &prompt)?);
        }
    }
    let ms = times.map(|mut v| median(&mut v));
    Ok(PromptAb { diff, top, agree, ms })
}

fn check_bf16(dev: &Device, name: &str) -> minilab::Result<()> {
    println!("| {name} bf16 | max |Δlogit| | max |logit| | argmax agrees | pp512 plain ms | fused ms | plain/fused |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in FORMATS {
        let loaded = timed_model(dev, name, p)?;
        let PromptAb { diff, top, agree, ms: [a, b] } = prompt_ab(&loaded.model, dev, 512, prefill_ops::set_enabled)?;
        println!("| {p} | {diff:.3e} | {top:.2} | {agree}/512 | {a:.3} | {b:.3} | {:.3} |", a / b);
    }
    prefill_ops::set_enabled(true);
    Ok(())
}

pub fn check_prefill(dev: &Device, name: &str) -> minilab::Result<()> {
    check_heads_to_rows(dev)?;
    check_f32_ab(dev, prefill_ops::set_enabled, "fused prefill, f32", |_, _| Ok(String::new()))?;
    check_bf16(dev, name)
}
