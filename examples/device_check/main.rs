//! Checks a GPU build against the CPU and its own plain path. Run on the GPU machine:
//!
//! - `device_check cuda`: the same synthetic model in f32 on both devices, every format, logits on
//!   64 real-looking token ids; one line per format with max |Δlogit| and argmax agreement.
//! - `device_check cuda kernels`: every fused kernel against the plain path (dequantize with candle
//!   ops, then matmul) on the same device, random inputs of real layer shapes, 1–8 rows (GEMV) and
//!   64 rows (dequantize + cuBLAS), f32 and bf16; then the time of one m = 1 product per format
//!   and shape, as effective weight bandwidth.
//! - `device_check cuda graph`: bf16 decode three ways on the GPU (the plain tensor-op path with the
//!   kernels off, the fused eager step, the step replayed as a CUDA graph), every format, 8
//!   prefilled tokens and 32 steps; max |Δlogit| between them, argmax agreement and graph nodes.
//! - `device_check cuda attention`: the fused decode attention against candle's ops on the same
//!   device (f32 reference), random q/k/v with NaN past the valid positions, grouped-query shapes
//!   of SmolLM2, Llama 3.2 3B / 3.1 8B, Qwen2.5 (7 heads a group) and multi-head, 1 to 8192 positions.
//! - `device_check cuda timemodel MODEL`: the sensitivity stage's decode-time model, its
//!   predictions of the uniform plans (which calibrate it) and three mixed ones (the last splitting
//!   every q/k/v and gate/up group) against measured tg128.
//! - `device_check cpu plans MODEL [PLAN.yaml…]`: the same for any model (`--model`'s forms) and plan
//!   files, in one process, three rounds alternating over the uniform plans and the files, then
//!   each plan loaded afresh: whether a mixed plan's step falls short of its prediction, and
//!   whether that depends on what the model held before.
//! - `device_check cuda folds`: the norm and residual add folded into GEMV launches against the plain
//!   path, both ways (`MINILAB_FUSE_NORM=1` and `=late`), whatever the variable says.
//! - `device_check cuda mixed [MODEL [time]]`: q/k/v and gate/up whose layers hold different formats in
//!   one launch (the default) against layer by layer (`MINILAB_FUSE_MIXED=0`): the launches at the
//!   3B's shapes against an f32 reference, decode logits of mixed plans both ways, and MODEL's step
//!   per plan timed both ways.
//! - `device_check cuda prefetch [MODEL]`: the decode step asking L2 for each next launch's weights
//!   (every way of `kernels::prefetch`) against the step without: logits equal bit for bit, then
//!   MODEL's step (default the 3B) timed per way.
//! - `device_check cuda staged [MODEL]`: the same for the one-row GEMVs staging their weights
//!   through shared memory (`kernels::staging`) against the plain kernels.
//! - `device_check cuda rope [MODEL]`: the same for the separate `rope_kv` kernel against the q/k/v
//!   launch that also applies RoPE and writes the KV cache (the default).
//! - `device_check cuda grid [MODEL]`: the same for GEMV launches on resident grids and for the
//!   streaming one-row kernels (`kernels::grid`) against a warp per row group.
//! - `device_check cuda prefill [MODEL]`: the fused prefill (the default) against the plain path
//!   (`MINILAB_FUSE_PREFILL=0`): its layout kernel bit for bit, the 1B's logits in f32 within 1e-4, MODEL's in bf16
//!   (max |Δ|, argmax), and pp512 timed both ways.
//! - `device_check cuda prefill-graph [MODEL]`: MODEL's pp512 in bf16, every format, eager (ms, and
//!   ms until the host issued its last launch) against the same prompt recorded as one CUDA graph
//!   and replayed: how much of a prompt is candle's host cost; the replay's logits against eager.
//! - `device_check cuda qgemm [MODEL]`: the prefill GEMM that dequantizes in shared memory
//!   (`MINILAB_QGEMM`) against the shipped prefill and an f32 CPU reference on random weights of
//!   the 3B's and 8B's shapes, each shape timed both ways, then MODEL's logits and pp512 both ways.
//! - `device_check cuda qgemm-rows`: the same shapes at 16 to 512 rows of xs, bf16 weights against
//!   int8/NF4 the shipped way and by the GEMM at either tile: where each way pays.
//! - `device_check cuda flash [MODEL]`: a prompt's causal attention in one kernel against the unfused way:
//!   random inputs of real and odd shapes against an f32 reference, timed, then MODEL's pp512 logits and ms.
//! - `device_check cuda wide [MODEL]`: the prompt's add + norm, silu·up, RoPE and causal softmax
//!   with 16-byte accesses against the 2-byte ones: each op on random inputs (bit for bit where element by
//!   element) and timed, the 1B's f32 logits, then MODEL's pp512 logits and ms both ways.
//! - `device_check cuda step MODEL PRECISION [PROMPT]`: one synthetic model in bf16, PROMPT (512) tokens prefilled,
//!   then 64 graph replays timed (ms a token); under `ncu --graph-profiling node` it gives each
//!   kernel's share of the step.

use candle_core::{DType, Device, Tensor};
use minilab::model::{self, Cache, LayerId, ModelSpec};
use minilab::plan::PrecisionPlan;
use minilab::quant::Precision;
use std::time::Instant;

mod flash;
mod folds;
mod kernels;
mod mixed;
mod prefill;
mod prefill_graph;
mod qgemm;
mod stack;
mod timemodel;
mod ways;
mod wide;

/// The formats every check runs.
const FORMATS: [Precision; 3] = [Precision::F16, Precision::Int8, Precision::Nf4];

/// Every layer of `model` in `p`.
fn set_uniform(model: &mut model::Model, p: Precision) -> minilab::Result<()> {
    for (id, q) in PrecisionPlan::uniform(p).resolve(&model.layer_ids(), "check")? {
        model.set_precision(id, q)?;
    }
    Ok(())
}

/// The synthetic model `name` in bf16, every layer in `p`, masters dropped: a model to time.
fn timed_model(dev: &Device, name: &str, p: Precision) -> minilab::Result<model::Loaded> {
    planned_model(dev, name, &uniform_pick(p))
}

/// The format `PrecisionPlan::uniform(p)` gives a layer: `p`, the LM head f16.
fn uniform_pick(p: Precision) -> impl Fn(LayerId) -> Precision {
    move |id| PrecisionPlan::uniform(p).resolve(&[id], "check").ok().and_then(|m| m.get(&id).copied()).unwrap_or(p)
}

/// The synthetic model `name` in bf16, each layer in the format `pick` gives it, masters dropped.
fn planned_model(dev: &Device, name: &str, pick: &dyn Fn(LayerId) -> Precision) -> minilab::Result<model::Loaded> {
    let mut loaded = model::load(&ModelSpec::Synthetic(name.into()), dev, DType::BF16)?;
    for id in loaded.model.layer_ids() {
        loaded.model.set_precision(id, pick(id))?;
    }
    loaded.model.drop_masters();
    Ok(loaded)
}

/// The worse of two errors; NaN once either is (`f32::max` would drop a NaN).
fn worse(worst: f32, e: f32) -> f32 {
    if worst.is_nan() || e.is_nan() {
        f32::NAN
    } else {
        worst.max(e)
    }
}

/// The index of the first largest logit of `r` (0 for an empty row).
fn argmax(r: &[f32]) -> usize {
    r.iter().enumerate().fold((0, f32::MIN), |m, (i, &x)| if x > m.1 { (i, x) } else { m }).0
}

/// Fails when the worst error of `what` is NaN or past `limit`.
fn within(worst: f32, limit: f32, what: &str) -> minilab::Result<()> {
    if worst.is_nan() || worst > limit {
        return Err(minilab::Error::Runtime(format!("{what}: worst error {worst:.2e}")));
    }
    Ok(())
}

/// A process-wide switch of the library: how it reads, how it is set.
type Switch = (fn() -> bool, fn(bool));

/// Runs `f`, then puts `switch` back as it found it, whatever `f` set it to, so that a check run
/// under a variable (`MINILAB_FLASH=0`, say) leaves the process as the variable asked.
fn as_found<R>((get, set): Switch, f: impl FnOnce() -> R) -> R {
    let was = get();
    let r = f();
    set(was);
    r
}

fn logits(dev: &Device, p: Precision, tokens: &[u32]) -> minilab::Result<Vec<Vec<f32>>> {
    let mut loaded = model::load(&ModelSpec::Synthetic("llama-3.2-1b".into()), dev, DType::F32)?;
    set_uniform(&mut loaded.model, p)?;
    let ids = Tensor::new(tokens, dev)?.unsqueeze(0)?;
    let out = loaded.model.forward(&ids, 0, &mut Cache::new(loaded.model.n_blocks()))?;
    Ok(out.squeeze(0)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
}

/// Logits of 16 single-token decode steps after an 8-token prefill: the KV cache and, on a GPU, the
/// fused decode attention.
fn decode_logits(dev: &Device, p: Precision, tokens: &[u32]) -> minilab::Result<Vec<Vec<f32>>> {
    let mut loaded = model::load(&ModelSpec::Synthetic("llama-3.2-1b".into()), dev, DType::F32)?;
    set_uniform(&mut loaded.model, p)?;
    let mut cache = Cache::new(loaded.model.n_blocks());
    let prompt = Tensor::new(&tokens[..8], dev)?.unsqueeze(0)?;
    loaded.model.forward(&prompt, 0, &mut cache)?;
    let mut out = Vec::new();
    for (i, &tok) in tokens[8..24].iter().enumerate() {
        let ids = Tensor::new(&[tok], dev)?.unsqueeze(0)?;
        let logits = loaded.model.forward(&ids, 8 + i, &mut cache)?;
        out.push(logits.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

fn check_logits(dev: &Device) -> minilab::Result<()> {
    let tokens: Vec<u32> = (0..64u32).map(|i| 1 + (i * 7919 + 13) % 128_000).collect();
    for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
        let (a, b) = (logits(&Device::Cpu, p, &tokens)?, logits(dev, p, &tokens)?);
        let (mut max_d, mut max_abs, mut same) = (0f32, 0f32, 0);
        for (ra, rb) in a.iter().zip(&b) {
            same += usize::from(argmax(ra) == argmax(rb));
            for (x, y) in ra.iter().zip(rb) {
                max_d = max_d.max((x - y).abs());
                max_abs = max_abs.max(x.abs());
            }
        }
        println!("{p}: max |Δlogit| {max_d:.3e} (max |logit| {max_abs:.2}), argmax agrees at {same}/64 positions");
        let (a, b) = (decode_logits(&Device::Cpu, p, &tokens)?, decode_logits(dev, p, &tokens)?);
        let d = a.iter().zip(&b).flat_map(|(x, y)| x.iter().zip(y).map(|(u, w)| (u - w).abs())).fold(0f32, f32::max);
        println!("{p} decode (8 prefilled + 16 steps, KV cache): max |Δlogit| {d:.3e}");
    }
    Ok(())
}

/// Largest |fused − plain| relative to the largest |plain| over the output, the two on any devices;
/// NaN once either holds a NaN (a tensor max may skip one), infinite for an infinity.
fn rel_err(fused: &Tensor, plain: &Tensor) -> minilab::Result<f32> {
    if fused.dims() != plain.dims() {
        return Err(minilab::Error::Runtime(format!("rel_err: {:?} against {:?}", fused.dims(), plain.dims())));
    }
    let host = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>();
    let (f, p) = (host(fused)?, host(plain)?);
    let d = f.iter().zip(&p).map(|(x, y)| (x - y).abs()).fold(0f32, worse);
    let m = p.iter().map(|y| y.abs()).fold(0f32, worse);
    Ok(d / m)
}

/// Each step's logits, and the graph's kernels and nodes.
type Decoded = (Vec<Vec<f32>>, (usize, usize));

/// Logits of 32 decode steps after an 8-token prefill, bf16: `graph` replays a captured step;
/// otherwise eager, with the kernels as set. Also the graph's node count.
fn bf16_decode(dev: &Device, p: Precision, tokens: &[u32], graph: bool) -> minilab::Result<Decoded> {
    bf16_decode_plan(dev, &uniform_pick(p), tokens, graph)
}

/// [`bf16_decode`] with each layer in the format `pick` gives it.
fn bf16_decode_plan(
    dev: &Device,
    pick: &dyn Fn(LayerId) -> Precision,
    tokens: &[u32],
    graph: bool,
) -> minilab::Result<Decoded> {
    let loaded = planned_model(dev, "llama-3.2-1b", pick)?;
    let m = &loaded.model;
    let mut cache = Cache::new(m.n_blocks());
    m.forward(&Tensor::new(&tokens[..8], dev)?.unsqueeze(0)?, 0, &mut cache)?;
    let g = if graph { Some(model::DecodeGraph::capture(m, &mut cache, 40)?) } else { None };
    let mut out = Vec::new();
    for (i, &tok) in tokens[8..40].iter().enumerate() {
        let logits = match &g {
            Some(g) => g.step(tok, &mut cache)?.clone(),
            None => m.forward(&Tensor::new(&[tok], dev)?.unsqueeze(0)?, 8 + i, &mut cache)?,
        };
        out.push(logits.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?);
    }
    Ok((out, g.map_or((0, 0), |g| g.nodes())))
}

fn check_graph(dev: &Device) -> minilab::Result<()> {
    let tokens: Vec<u32> = (0..40u32).map(|i| 1 + (i * 7919 + 13) % 128_000).collect();
    let diff = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(u, w)| (u - w).abs())).fold(0f32, f32::max)
    };
    let agree = |a: &[Vec<f32>], b: &[Vec<f32>]| a.iter().zip(b).filter(|(x, y)| argmax(x) == argmax(y)).count();
    println!("| format | fused eager vs plain max |Δ| | argmax | graph vs fused eager max |Δ| | argmax | graph kernels / nodes |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
        minilab::kernels::set_enabled(false);
        let plain = bf16_decode(dev, p, &tokens, false)?.0;
        minilab::kernels::set_enabled(true);
        let eager = bf16_decode(dev, p, &tokens, false)?.0;
        let (graph, nodes) = bf16_decode(dev, p, &tokens, true)?;
        println!(
            "| {p} | {:.3e} | {}/32 | {:.3e} | {}/32 | {} / {} |",
            diff(&eager, &plain),
            agree(&eager, &plain),
            diff(&graph, &eager),
            agree(&graph, &eager),
            nodes.0,
            nodes.1
        );
    }
    Ok(())
}

/// Causal attention by candle's ops in f32: q `[b, heads, t, d]` at positions `start..start + t`, k,
/// v `[b, kv_heads, total, d]` → `[b, heads, t, d]` (a decode step's one query sees every position).
fn attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, start: usize) -> minilab::Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, total, _) = k.dims4()?;
    // (b, kv_heads, total, d) → (b, heads, total, d)
    let rep = |x: &Tensor| -> candle_core::Result<Tensor> {
        x.to_dtype(DType::F32)?
            .unsqueeze(2)?
            .expand((b, kv_heads, heads / kv_heads, total, d))?
            .reshape((b, heads, total, d))
    };
    let (k, v) = (rep(k)?, rep(v)?);
    let scores = q.to_dtype(DType::F32)?.matmul(&k.t()?.contiguous()?)?;
    Ok(minilab::kernels::softmax::causal_softmax_reference(&scores, scale, t, start)?.matmul(&v)?)
}

fn check_attention(dev: &Device) -> minilab::Result<()> {
    println!(
        "| heads / kv heads × d | dtype | batch | cap | max |fused − ref| / max |ref| at each count of positions |"
    );
    println!("| --- | --- | ---: | ---: | --- |");
    let mut worst = [0f32; 2];
    for (heads, kv_heads, d) in [(9, 3, 64), (24, 8, 128), (32, 8, 128), (28, 4, 128), (16, 16, 128)] {
        for (di, dtype) in [DType::F32, DType::BF16].into_iter().enumerate() {
            for (b, cap) in [(1, 256), (1, 1024), (2, 1024), (1, 8192)] {
                let mut errs = Vec::new();
                for total in [1, 2, 17, 255, cap / 2 + 3, cap] {
                    let total = total.min(cap);
                    let q = Tensor::randn(0f32, 1.0, (b, heads, 1, d), dev)?.to_dtype(dtype)?;
                    // valid positions, then NaN: a read past *pos + 1 shows in the output
                    let kv = |_| -> candle_core::Result<Tensor> {
                        let valid = Tensor::randn(0f32, 1.0, (b, kv_heads, total, d), dev)?;
                        if total == cap {
                            return valid.to_dtype(dtype);
                        }
                        let nan = Tensor::full(f32::NAN, (b, kv_heads, cap - total, d), dev)?;
                        Tensor::cat(&[valid, nan], 2)?.to_dtype(dtype)
                    };
                    let (k, v) = (kv(0)?, kv(1)?);
                    let pos = Tensor::new(&[total as u32 - 1], dev)?;
                    let scale = 1.0 / (d as f64).sqrt();
                    let Some(fused) = minilab::kernels::decode::attention_decode(&q, &k, &v, &pos, scale as f32)?
                    else {
                        return Err(minilab::Error::input(format!("no fused attention for {heads}/{kv_heads}×{d}")));
                    };
                    let plain =
                        attention_reference(&q, &k.narrow(2, 0, total)?, &v.narrow(2, 0, total)?, scale, total - 1)?;
                    let finite =
                        fused.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.iter().all(|x| x.is_finite());
                    let e = if finite { rel_err(&fused, &plain)? } else { f32::INFINITY };
                    worst[di] = worse(worst[di], e);
                    errs.push(format!("{total}: {e:.1e}"));
                }
                println!("| {heads} / {kv_heads} × {d} | {dtype:?} | {b} | {cap} | {} |", errs.join(", "));
            }
        }
    }
    println!("worst attention error: f32 {:.2e}, bf16 {:.2e}", worst[0], worst[1]);
    Ok(())
}

/// The prefill's causal softmax kernel against candle's ops on the same GPU: prefills from an empty
/// cache and continued after cached positions, one query (a decode step), GQA groups folded into rows.
fn check_softmax(dev: &Device) -> minilab::Result<()> {
    use minilab::kernels::softmax::{causal_softmax, causal_softmax_reference};
    println!("| scores | t | start | dtype | max |fused − ref| / max |ref| | masked entries not 0 |");
    println!("| --- | ---: | ---: | --- | ---: | ---: |");
    let mut worst = 0f32;
    // (b, kv_heads, group, t, start)
    for (b, kv_heads, group, t, start) in
        [(1, 8, 3, 512, 0), (1, 8, 4, 7, 512), (2, 4, 7, 64, 0), (1, 3, 3, 1, 99), (1, 2, 1, 33, 2000)]
    {
        let total = start + t;
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let scores = (Tensor::randn(0f32, 1.0, (b, kv_heads, group * t, total), dev)? * 8.0)?.to_dtype(dtype)?;
            let scale = 1.0 / 128f64.sqrt();
            let fused = causal_softmax(&scores, scale, t, start)?;
            let plain = causal_softmax_reference(&scores, scale, t, start)?;
            let e = rel_err(&fused, &plain)?;
            // every row r of query i = r % t must be 0 past key start + i
            let rows = fused.to_dtype(DType::F32)?.flatten_to(2)?.to_vec2::<f32>()?;
            let leaks = rows
                .iter()
                .enumerate()
                .map(|(r, row)| row[start + r % t + 1..].iter().filter(|&&p| p != 0.0).count())
                .sum::<usize>();
            let e = if leaks > 0 || !e.is_finite() { f32::INFINITY } else { e };
            worst = worse(worst, e);
            println!("| {b}×{kv_heads}×{}×{total} | {t} | {start} | {dtype:?} | {e:.2e} | {leaks} |", group * t);
        }
    }
    println!("worst causal softmax error: {worst:.2e}");
    Ok(())
}

/// Which format each layer of a plan takes.
type PlanOf = fn(LayerId) -> Precision;

/// The sensitivity stage's decode-time model on a synthetic model (bf16): its fixed cost, and its
/// prediction of tg128 against the measured one for the uniform plans (which calibrate it) and two
/// mixed ones (which test it).
fn time_step(dev: &Device, name: &str, p: &str, prompt_len: u32) -> minilab::Result<()> {
    let p: Precision = p.parse().map_err(|e: minilab::quant::UnknownPrecision| minilab::Error::input(e.to_string()))?;
    let loaded = timed_model(dev, name, p)?;
    let prompt: Vec<u32> = (0..prompt_len).map(|i| 1 + (i * 7919 + 13) % 100_000).collect();
    let (ms, g) = replay_ms(dev, &loaded.model, &prompt)?;
    let (kernels, nodes) = g.nodes();
    println!(
        "{name} {p}: {ms:.3} ms a token ({:.1} tok/s) at positions {}-{}, cache of {}, {kernels} kernels / {nodes} nodes",
        1e3 / ms,
        prompt.len() + 8,
        prompt.len() + 71,
        g.capacity()
    );
    Ok(())
}

/// `prompt` prefilled, the step captured as a graph, 8 replays to warm up, then the ms a token of 64
/// timed replays (decoding at positions `prompt.len() + 8 …`), and the graph.
fn replay_ms<'m>(dev: &Device, m: &'m model::Model, prompt: &[u32]) -> minilab::Result<(f64, model::DecodeGraph<'m>)> {
    let mut cache = Cache::new(m.n_blocks());
    m.forward(&Tensor::new(prompt, dev)?.unsqueeze(0)?, 0, &mut cache)?;
    let g = model::DecodeGraph::capture(m, &mut cache, prompt.len() + 80)?;
    for tok in 0..8 {
        g.step(1 + tok, &mut cache)?;
    }
    dev.synchronize()?;
    let t = Instant::now();
    for tok in 0..64 {
        g.step(100 + tok, &mut cache)?;
    }
    dev.synchronize()?;
    Ok((t.elapsed().as_secs_f64() * 1e3 / 64.0, g))
}

fn main() -> minilab::Result<()> {
    let mut args = std::env::args().skip(1).collect::<Vec<_>>().into_iter();
    let dev = minilab::device::parse_device(&args.next().unwrap_or_else(|| "cuda".into()))?;
    // on a rayon worker, as minilab runs, so that CPU timings are minilab's
    minilab::device::on_worker(move || check(dev, args))
}

/// The median of `v` (sorted in place; the upper one of an even count).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The check `args` name (the first is the mode) on `dev`.
fn check(dev: Device, mut args: impl Iterator<Item = String>) -> minilab::Result<()> {
    match args.next().as_deref() {
        Some("kernels") => kernels::check_kernels(&dev),
        Some("graph") => check_graph(&dev),
        Some("attention") => check_attention(&dev),
        Some("softmax") => check_softmax(&dev),
        Some("folds") => folds::check_folds(&dev),
        Some("prefetch") => ways::check_prefetch(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("staged") => ways::check_staged(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("rope") => ways::check_rope(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("prefill") => prefill::check_prefill(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("prefill-graph") => {
            prefill_graph::check_prefill_graph(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into()))
        }
        Some("qgemm") => qgemm::check_qgemm(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("qgemm-rows") => qgemm::check_qgemm_rows(&dev),
        Some("flash") => flash::check_flash(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("wide") => wide::check_wide(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("stack") => stack::check_stack(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("grid") => ways::check_grid(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("mixed") => {
            let name = args.next().unwrap_or_else(|| "llama-3.2-3b".into());
            mixed::check_mixed(&dev, &name, args.next().as_deref() == Some("time"))
        }
        Some("timemodel") => timemodel::check_time_model(&dev, &args.next().unwrap_or_else(|| "llama-3.2-3b".into())),
        Some("plans") => {
            let spec = args.next().unwrap_or_else(|| "synthetic:smollm2-135m".into());
            timemodel::check_plans(&dev, &spec, &args.collect::<Vec<_>>())
        }
        Some("step") => {
            let name = args.next().unwrap_or_else(|| "llama-3.2-3b".into());
            let p = args.next().unwrap_or_else(|| "f16".into());
            let prompt =
                args.next().map_or(Ok(512), |n| n.parse()).map_err(|_| minilab::Error::input("prompt length"))?;
            time_step(&dev, &name, &p, prompt)
        }
        _ => check_logits(&dev),
    }
}
