//! `device_check cuda flash [MODEL]`: a prompt's causal attention in one kernel (`kernels::flash`,
//! `MINILAB_FLASH`) against the unfused way (q·kᵀ, the causal softmax, ·v); it leaves the process
//! with the fused kernel on.
//!
//! 1. Random q, k, v of real and odd shapes (the 3B's and 8B's heads at 512 and 2048 tokens, d 64,
//!    a prompt after cached positions in a longer buffer, a batch of two, rows of a block straddling
//!    two heads, one query), bf16 and f16: both ways against an f32 reference by candle's ops, the
//!    fused output first poisoned with NaN. The fused way must be within 1.5× the unfused way's
//!    error (both round to 16 bits; the fused one keeps the scores in f32).
//!    The kernel's three-blocks-an-SM build (`flash::three_blocks`) must equal it bit for bit; its
//!    split-KV build (`flash::split`, which merges two halves of a row block's keys in another
//!    order) must keep within the same bound as the default.
//! 2. The 3B's and 8B's attention at 512 and 2048 tokens timed both ways, µs, and the fused way
//!    timed in each build.
//! 3. MODEL (default the 3B) in bf16: pp512's logits both ways, then its ms both ways; the same for
//!    the split-KV build against the default.

use candle_core::{DType, Device, Tensor};
use minilab::kernels::{flash, softmax};

use super::prefill::{prompt_ab, PromptAb};
use super::wide::{random, time_both, Run};
use super::{as_found, attention_reference, rel_err, timed_model, within, Switch};

/// One attention problem: batch, query heads, kv heads, new tokens, cached positions before them,
/// buffer capacity, head dim.
#[derive(Clone, Copy)]
struct Shape {
    b: usize,
    heads: usize,
    kv_heads: usize,
    t: usize,
    start: usize,
    cap: usize,
    d: usize,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Shape { b, heads, kv_heads, t, start, cap, d } = *self;
        write!(f, "b{b} {heads}/{kv_heads}×{d} t{t} start{start} cap{cap}")
    }
}

/// q `[b, heads, t, d]`, k and v `[b, kv_heads, cap, d]`.
fn inputs(dev: &Device, dtype: DType, s: Shape) -> minilab::Result<[Tensor; 3]> {
    Ok([
        random(dev, dtype, &[s.b, s.heads, s.t, s.d], 1.0)?,
        random(dev, dtype, &[s.b, s.kv_heads, s.cap, s.d], 2.0)?,
        random(dev, dtype, &[s.b, s.kv_heads, s.cap, s.d], 1.0)?,
    ])
}

/// The unfused way of attention.rs (`attend_heads` then the rows layout) → `[b, t, heads·d]`.
fn unfused(s: Shape, [q, k, v]: &[Tensor; 3]) -> candle_core::Result<Tensor> {
    let total = s.start + s.t;
    let (k, v) = (k.narrow(2, 0, total)?.contiguous()?, v.narrow(2, 0, total)?.contiguous()?);
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (s.d as f64).sqrt();
    // (b, heads, t, d) → (b, kv_heads, group·t, d)
    let q = q.reshape((s.b, s.kv_heads, group * s.t, s.d))?;
    let att = softmax::causal_softmax(&q.matmul(&k.t()?)?, scale, s.t, s.start)?;
    // (b, kv_heads, group·t, d) → (b, t, heads·d)
    att.matmul(&v)?.reshape((s.b, s.heads, s.t, s.d))?.transpose(1, 2)?.reshape((s.b, s.t, s.heads * s.d))
}

/// The same in f32 by candle's ops (`attention_reference`) → `[b, t, heads·d]`.
fn reference(s: Shape, [q, k, v]: &[Tensor; 3]) -> minilab::Result<Tensor> {
    let total = s.start + s.t;
    let scale = 1.0 / (s.d as f64).sqrt();
    let ys = attention_reference(q, &k.narrow(2, 0, total)?, &v.narrow(2, 0, total)?, scale, s.start)?;
    // (b, heads, t, d) → (b, t, heads·d)
    Ok(ys.transpose(1, 2)?.reshape((s.b, s.t, s.heads * s.d))?)
}

/// The fused way, its output buffer's memory first filled with NaN (the allocator hands the freed
/// block back), so that an element it does not write shows.
fn fused(s: Shape, [q, k, v]: &[Tensor; 3]) -> minilab::Result<Tensor> {
    let poison = Tensor::full(f32::NAN, (s.b, s.t, s.heads * s.d), q.device())?.to_dtype(q.dtype())?;
    drop(poison);
    flash::causal_attention(q, k, v, s.start, 1.0 / (s.d as f64).sqrt())?
        .ok_or_else(|| minilab::Error::Runtime(format!("flash attention does not take {s}")))
}

fn check_shapes(dev: &Device) -> minilab::Result<()> {
    let at = |b, heads, kv_heads, t, start, cap, d| Shape { b, heads, kv_heads, t, start, cap, d };
    let shapes = [
        at(1, 24, 8, 512, 0, 512, 128),
        at(1, 32, 8, 512, 0, 512, 128),
        at(1, 24, 8, 2048, 0, 2048, 128),
        at(1, 32, 8, 200, 0, 256, 64),
        at(1, 24, 8, 100, 37, 256, 128),
        at(2, 6, 2, 33, 5, 64, 128),
        at(1, 24, 8, 77, 0, 77, 128),
        at(2, 8, 2, 300, 20, 320, 128),
        at(1, 4, 2, 7, 0, 7, 64),
        at(1, 8, 8, 1, 10, 16, 64),
    ];
    println!(
        "| attention | dtype | unfused max |Δ| / max |ref| | fused | fused, three blocks an SM − fused | split-KV |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    flash::set_enabled(true);
    for dtype in [DType::BF16, DType::F16] {
        for s in shapes {
            let x = inputs(dev, dtype, s)?;
            let want = reference(s, &x)?;
            let (e_unfused, e_fused) = (rel_err(&unfused(s, &x)?, &want)?, rel_err(&fused(s, &x)?, &want)?);
            let b3 = three_blocks_diff(s, &x)?;
            let e_split = rel_err(&split(s, &x)?, &want)?;
            println!("| {s} | {dtype:?} | {e_unfused:.2e} | {e_fused:.2e} | {b3:.2e} | {e_split:.2e} |");
            within(e_fused, 1.5 * e_unfused.max(1e-3), &format!("flash attention {s} {dtype:?}"))?;
            within(e_split, 1.5 * e_unfused.max(1e-3), &format!("flash attention, split-KV, {s} {dtype:?}"))?;
            // the same arithmetic under another register budget: equal bit for bit
            within(b3, 0.0, &format!("flash attention, three blocks an SM, {s} {dtype:?}"))?;
        }
    }
    println!();
    Ok(())
}

/// The kernel's build switches.
const THREE_BLOCKS: Switch = (flash::three_blocks, flash::set_three_blocks);
const SPLIT: Switch = (flash::split, flash::set_split);

/// The fused way with a build switch turned `on` or off, then put back as found.
fn fused_with(switch: Switch, on: bool, s: Shape, x: &[Tensor; 3]) -> minilab::Result<Tensor> {
    as_found(switch, || {
        switch.1(on);
        fused(s, x)
    })
}

/// The fused way's split-KV build on `x` (the default build where the shape has too many blocks).
fn split(s: Shape, x: &[Tensor; 3]) -> minilab::Result<Tensor> {
    fused_with(SPLIT, true, s, x)
}

/// Max |Δ| / max |default| between the two builds of the kernel (`flash::three_blocks`) on `x`.
fn three_blocks_diff(s: Shape, x: &[Tensor; 3]) -> minilab::Result<f32> {
    rel_err(&fused_with(THREE_BLOCKS, true, s, x)?, &fused_with(THREE_BLOCKS, false, s, x)?)
}

fn time_shapes(dev: &Device) -> minilab::Result<()> {
    println!(
        "| attention (bf16) | unfused µs | fused µs | unfused/fused | three blocks an SM µs | fused/three blocks \
         | split-KV µs | fused/split |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (heads, t) in [(24, 512), (32, 512), (24, 2048), (32, 2048)] {
        let s = Shape { b: 1, heads, kv_heads: 8, t, start: 0, cap: t, d: 128 };
        let x = inputs(dev, DType::BF16, s)?;
        // switched off, causal_attention declines and the unfused way runs
        let run: Run = Box::new(|| {
            Ok(vec![match flash::causal_attention(&x[0], &x[1], &x[2], 0, 1.0 / (s.d as f64).sqrt())? {
                Some(ys) => ys,
                None => unfused(s, &x)?,
            }])
        });
        let [a, b] = time_both(dev, &run, flash::set_enabled)?;
        let [b2, b3] = as_found(THREE_BLOCKS, || time_both(dev, &run, flash::set_three_blocks))?;
        let [b4, sp] = as_found(SPLIT, || time_both(dev, &run, flash::set_split))?;
        println!("| {s} | {a:.2} | {b:.2} | {:.2} | {b3:.2} | {:.2} | {sp:.2} | {:.2} |", a / b, b2 / b3, b4 / sp);
    }
    println!();
    Ok(())
}

pub(super) fn check_flash(dev: &Device, name: &str) -> minilab::Result<()> {
    check_shapes(dev)?;
    time_shapes(dev)?;
    let loaded = timed_model(dev, name, minilab::quant::Precision::F16)?;
    let PromptAb { diff, top, agree, ms: [a, b] } = prompt_ab(&loaded.model, dev, 512, flash::set_enabled)?;
    println!(
        "{name} bf16 f16 pp512, fused against unfused attention: max |Δlogit| {diff:.3e} (max |logit| {top:.2}), \
         argmax {agree}/512, {a:.3} → {b:.3} ms ({:.3}×)",
        a / b
    );
    within(diff, 0.1 * top, "flash attention, pp512 logits")?;
    let PromptAb { diff, top, agree, ms: [a, b] } =
        as_found(SPLIT, || prompt_ab(&loaded.model, dev, 512, flash::set_split))?;
    println!(
        "{name} bf16 f16 pp512, split-KV against the default build: max |Δlogit| {diff:.3e} (max |logit| {top:.2}), \
         argmax {agree}/512, {a:.3} → {b:.3} ms ({:.3}×)",
        a / b
    );
    within(diff, 0.1 * top, "flash attention, split-KV, pp512 logits")
}
