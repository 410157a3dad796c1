//! `device_check cuda stack [MODEL]`: q/k/v stacked into one weight (`MINILAB_STACK_QKV=1`) against
//! the same layers apart, on one model whose weights are views of the stack either way (the switch
//! also decides, at each forward, whether the stack is used); it leaves the process stacking.
//!
//! 1. The synthetic 1B in f32, every format: a 2 × 64-token prompt, 7 more tokens, one decode step
//!    (the GEMVs on the views) and a scored 96-token window; logits within 1e-4 of the layers apart.
//! 2. MODEL (default the 3B) in bf16, every format, every block stacked: the prompt's logits both
//!    ways at 128 and 512 tokens (max |Δ| / max |logit| within 5e-2: cuBLAS and CUTLASS may pick
//!    other tiles for the wider product), then the prompt timed both ways, alternating, ms (median).

use candle_core::{DType, Device};
use minilab::model;
use minilab::quant::{stacked, Precision};

use super::prefill::{f32_calls, prompt_ab, PromptAb};
use super::{rel_err, set_uniform, timed_model, within, worse};

const FORMATS: [Precision; 3] = [Precision::F16, Precision::Int8, Precision::Nf4];

fn check_f32(dev: &Device) -> minilab::Result<()> {
    stacked::set_stacking(true);
    let mut loaded = model::load(&model::ModelSpec::Synthetic("llama-3.2-1b".into()), dev, DType::F32)?;
    let mut worst = 0f32;
    for p in FORMATS {
        stacked::set_stacking(true);
        set_uniform(&mut loaded.model, p)?;
        let stacked_blocks = loaded.model.stacked_qkv();
        let apart = f32_calls(&loaded.model, dev, stacked::set_stacking, false)?;
        let stacked = f32_calls(&loaded.model, dev, stacked::set_stacking, true)?;
        let errs = stacked.iter().zip(&apart).map(|(s, a)| rel_err(s, a)).collect::<minilab::Result<Vec<_>>>()?;
        errs.iter().for_each(|&e| worst = worse(worst, e));
        println!(
            "1B f32 {p} ({stacked_blocks}/{} blocks stacked): prompt / continuation / step / scored window {:.1e} / {:.1e} / {:.1e} / {:.1e}",
            loaded.model.n_blocks(),
            errs[0],
            errs[1],
            errs[2],
            errs[3]
        );
        if stacked_blocks != loaded.model.n_blocks() {
            return Err(minilab::Error::Runtime(format!("1B {p}: only {stacked_blocks} blocks stacked")));
        }
    }
    within(worst, 1e-4, "stacked q/k/v, f32")
}

pub(super) fn check_stack(dev: &Device, name: &str) -> minilab::Result<()> {
    check_f32(dev)?;
    println!(
        "| {name} bf16 | tokens | max |Δlogit| | max |logit| | argmax agrees | apart ms | stacked ms | apart/stacked |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0f32;
    for p in FORMATS {
        stacked::set_stacking(true);
        let loaded = timed_model(dev, name, p)?;
        let blocks = (loaded.model.stacked_qkv(), loaded.model.n_blocks());
        if blocks.0 != blocks.1 {
            return Err(minilab::Error::Runtime(format!("{name} {p}: {} of {} blocks stacked", blocks.0, blocks.1)));
        }
        for tokens in [128, 512] {
            let PromptAb { diff, top, agree, ms: [a, b] } =
                prompt_ab(&loaded.model, dev, tokens, stacked::set_stacking)?;
            worst = worse(worst, diff / top);
            println!("| {p} | {tokens} | {diff:.3e} | {top:.2} | {agree}/{tokens} | {a:.3} | {b:.3} | {:.3} |", a / b);
        }
    }
    stacked::set_stacking(true);
    within(worst, 5e-2, "stacked q/k/v, bf16")
}
