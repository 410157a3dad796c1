//! `device_check cuda stack [MODEL]`: q/k/v stacked into one weight (`MINILAB_STACK_QKV=1`) against
//! the same layers apart, on one model whose weights are views of the stack either way (the switch
//! also decides, at each forward, whether the stack is used); it leaves the process stacking.
//!
//! 1. The synthetic 1B in f32, every format: a 2 × 64-token prompt, 7 more tokens, one decode step
//!    (the GEMVs on the views) and a scored 96-token window; logits within 1e-4 of the layers apart.
//! 2. MODEL (default the 3B) in bf16, every format, every block stacked: the prompt's logits both
//!    ways at 128 and 512 tokens (max |Δ| / max |logit| within 5e-2: cuBLAS and CUTLASS may pick
//!    other tiles for the wider product), then the prompt timed both ways, alternating, ms (median).

use candle_core::Device;
use minilab::model;
use minilab::quant::{stacked, Precision};

use super::prefill::{check_f32_ab, prompt_ab, PromptAb};
use super::{timed_model, within, worse, FORMATS};

/// Item 1: every block must be stacked.
fn blocks_stacked(m: &model::Model, p: Precision) -> minilab::Result<String> {
    match (m.stacked_qkv(), m.n_blocks()) {
        (s, n) if s == n => Ok(format!(" ({s}/{n} blocks stacked)")),
        (s, n) => Err(minilab::Error::Runtime(format!("{p}: {s} of {n} blocks stacked"))),
    }
}

pub(super) fn check_stack(dev: &Device, name: &str) -> minilab::Result<()> {
    check_f32_ab(dev, stacked::set_stacking, "stacked q/k/v, f32", blocks_stacked)?;
    println!(
        "| {name} bf16 | tokens | max |Δlogit| | max |logit| | argmax agrees | apart ms | stacked ms | apart/stacked |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0f32;
    for p in FORMATS {
        stacked::set_stacking(true);
        let loaded = timed_model(dev, name, p)?;
        blocks_stacked(&loaded.model, p)?;
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
