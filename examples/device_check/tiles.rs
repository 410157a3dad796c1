//! `device_check cuda tiles [MODEL]`: CUTLASS's one-wave tiles (`kernels::qgemm::one_wave`,
//! `MINILAB_CUTLASS_TILES=one-wave`) against the three measured tiles alone (the default), on one
//! model.
//! MODEL (default the 3B) in bf16, int8 (and NF4 where `MINILAB_QGEMM=cutlass` sends it through
//! CUTLASS too): the prompt's logits both ways at 128, 512 and 2048 tokens (max |Δ| / max |logit|
//! within 1e-2; equal where no product changes tile: a tile's width does not change the order in
//! which an output sums over k), then the prompt timed both ways, alternating, ms (median). It
//! leaves the process on the default (the measured tiles).

use candle_core::Device;
use minilab::kernels::qgemm;
use minilab::quant::Precision;

use super::prefill::{prompt_ab, PromptAb};
use super::{timed_model, within, worse};

pub(super) fn check_tiles(dev: &Device, name: &str) -> minilab::Result<()> {
    println!("| {name} bf16 | tokens | max |Δlogit| | max |logit| | argmax agrees | measured ms | one-wave ms | measured/one-wave |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut worst = 0f32;
    for p in [Precision::Int8, Precision::Nf4] {
        let loaded = timed_model(dev, name, p)?;
        let context = loaded.model.config().max_position_embeddings;
        for tokens in [128, 512, 2048].into_iter().filter(|&t| t <= context) {
            let PromptAb { diff, top, agree, ms: [a, b] } = prompt_ab(&loaded.model, dev, tokens, qgemm::set_one_wave)?;
            worst = worse(worst, diff / top);
            println!("| {p} | {tokens} | {diff:.3e} | {top:.2} | {agree}/{tokens} | {a:.3} | {b:.3} | {:.3} |", a / b);
        }
    }
    qgemm::set_one_wave(false);
    within(worst, 1e-2, "one-wave CUTLASS tiles, bf16")
}
