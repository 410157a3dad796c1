//! `device_check cuda prefill-graph [MODEL]`: how much of a prompt is the host's. MODEL (default the
//! 3B) in bf16, every format: a 512-token prompt to its last position's logits, scored without a
//! cache, run eagerly (ms in all, and ms until the host has issued the last launch: where the GPU is
//! the bottleneck the forward returns long before its work is done), then recorded as one CUDA graph
//! and replayed (ms). A replay much faster than the eager prompt means candle's per-launch host cost,
//! not the kernels, holds the prompt; a graph per prompt shape would then pay. The replay's logits
//! are compared with the eager ones (the same kernels: equal, unless a library picks another
//! algorithm under capture).

use super::prefill::{ids, timed};
use super::{timed_model, worse, FORMATS};
use candle_core::{DType, Device, Tensor};
use minilab::model::{graph::Recorded, Cache};

fn row_f32(t: &Tensor) -> minilab::Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f32>()?)
}

pub fn check_prefill_graph(dev: &Device, name: &str) -> minilab::Result<()> {
    println!("| {name} bf16 pp512 | eager ms | host issued by ms | replay ms | eager / replay | kernels / nodes | max |Δlogit| |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for p in FORMATS {
        let loaded = timed_model(dev, name, p)?;
        let m = &loaded.model;
        let vocab = m.config().vocab_size;
        let prompt = ids(dev, vocab, (1, 512), 5)?;
        let logits = Tensor::zeros((1, vocab), DType::F32, dev)?;
        // [1, vocab] f32 into the buffer the graph owns; everything else is freed inside
        let run = || logits.slice_set(&m.forward_last(&prompt, 0, &mut Cache::scoring())?, 0, 0);
        let (eager, issued) = timed(dev, run)?;
        let want = row_f32(&logits)?;
        let graph = match Recorded::record(dev, run) {
            Ok(g) => g,
            Err(e) => {
                println!(
                    "| {p} | {eager:.3} | {issued:.3} | capture failed: {} | | | |",
                    minilab::error::one_line(&e.to_string())
                );
                continue;
            }
        };
        logits.zero_set()?;
        graph.replay()?;
        let got = row_f32(&logits)?;
        let diff = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0f32, worse);
        let (replay, _) = timed(dev, || graph.replay())?;
        let (kernels, nodes) = graph.nodes();
        println!(
            "| {p} | {eager:.3} | {issued:.3} | {replay:.3} | {:.3} | {kernels} / {nodes} | {diff:.3e} |",
            eager / replay
        );
    }
    Ok(())
}
