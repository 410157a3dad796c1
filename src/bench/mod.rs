//! Prefill (ppN) and decode (tgN) timing, measured memory and the roofline (DESIGN.md §3).

pub mod log;
pub mod memory;
pub mod roofline;
pub mod suite;
pub mod table;
pub mod time_model;

use crate::device::sync;
use crate::error::Result;
use crate::model::{Cache, Model};
use candle_core::Tensor;
use serde::Serialize;
use std::time::Instant;

/// One test of a bench run, llama-bench style.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRecord {
    pub model: String,
    /// `pp512`, `tg128`, `tg128@d512`.
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub depth: usize,
    /// Mean tokens/s over the repetitions.
    pub avg_ts: f64,
    pub stddev_ts: f64,
    /// Wall time of each repetition, ns.
    pub samples_ns: Vec<u64>,
    /// ppN only: mean time to first token (the whole prompt forward), ms.
    pub ttft_ms: Option<f64>,
    /// Computed from the plan.
    pub weight_bytes: u64,
    /// Measured: CUDA free-memory delta around the load, or RSS growth on the CPU.
    pub device_bytes: u64,
    /// Measured: peak during the runs, relative to before the load.
    pub device_peak_bytes: u64,
    /// Measured copy bandwidth of the device, bytes/s (0 when skipped).
    pub bandwidth: f64,
    /// tgN only: decode speed as % of bandwidth ÷ bytes read per token.
    pub roofline_pct: Option<f64>,
    /// Measured dense matmul throughput of the device in the compute dtype, FLOP/s (0 when skipped).
    pub matmul_flops: f64,
    /// ppN only: the prompt's FLOPs per second ([`roofline::prefill_flops`]) as % of `matmul_flops`.
    pub compute_pct: Option<f64>,
    /// tgN only: whether the decode steps replayed a CUDA graph.
    pub cuda_graph: Option<bool>,
    /// tgN only: whether the decode step folded its norms and residual adds into the GEMV launches
    /// (`MINILAB_FUSE_NORM`; by default where the step is one row of f16/bf16 on the GPU).
    pub norms_folded: Option<bool>,
    pub precision: String,
    pub device: String,
    pub dtype: String,
    pub threads: usize,
    pub reps: usize,
    /// The kernel settings in effect that differ from the defaults (`MINILAB_*=value`).
    pub settings: Vec<String>,
}

impl BenchRecord {
    /// A record of `model` on `device` in `dtype` with no test, figures or ceilings yet.
    pub fn empty(model: &str, device: &candle_core::Device, dtype: candle_core::DType) -> Self {
        Self {
            model: model.to_string(),
            test: String::new(),
            n_prompt: 0,
            n_gen: 0,
            depth: 0,
            avg_ts: 0.0,
            stddev_ts: 0.0,
            samples_ns: vec![],
            ttft_ms: None,
            weight_bytes: 0,
            device_bytes: 0,
            device_peak_bytes: 0,
            bandwidth: 0.0,
            roofline_pct: None,
            matmul_flops: 0.0,
            compute_pct: None,
            cuda_graph: None,
            norms_folded: None,
            precision: String::new(),
            device: crate::device::device_name(device),
            dtype: format!("{dtype:?}").to_lowercase(),
            threads: candle_core::utils::get_num_threads(),
            reps: 0,
            settings: crate::env_vars::in_effect(),
        }
    }
}

/// Mean and standard deviation of tokens/s over samples of `n` tokens each.
pub fn tokens_per_s(n: usize, samples_ns: &[u64]) -> (f64, f64) {
    let ts: Vec<f64> = samples_ns.iter().map(|&ns| n as f64 * 1e9 / ns.max(1) as f64).collect();
    crate::eval::mean_sd(&ts)
}

fn row(tokens: &[u32], model: &Model) -> Result<Tensor> {
    Ok(Tensor::new(tokens, model.device())?.unsqueeze(0)?)
}

/// Wall times of `reps` prompt forwards over `prompt` up to the last position's logits, the time to
/// first token (after one warm-up), device synchronized.
pub fn time_prefill(model: &Model, prompt: &[u32], reps: usize, pb: &indicatif::ProgressBar) -> Result<Vec<u64>> {
    let ids = row(prompt, model)?;
    let mut samples = Vec::with_capacity(reps);
    for i in 0..=reps {
        let mut cache = Cache::new(model.n_blocks());
        sync(model.device())?;
        let t = Instant::now();
        let logits = model.forward_last(&ids, 0, &mut cache)?;
        sync(model.device())?;
        let ns = t.elapsed().as_nanos() as u64;
        drop(logits);
        if i > 0 {
            samples.push(ns);
            pb.inc(1);
        }
    }
    Ok(samples)
}

/// What [`time_decode`] measured.
#[derive(Debug, Clone)]
pub struct DecodeTiming {
    /// Wall time of each repetition, ns.
    pub samples_ns: Vec<u64>,
    /// Whether the steps replayed a CUDA graph (else they ran eagerly).
    pub graph: bool,
}

/// Wall times of `reps` runs of `gen.len()` single-token decode steps after a prompt of `depth`
/// tokens (prefilled outside the clock). The fed tokens are the text's own next tokens, so no
/// sampling happens inside the loop. On CUDA the step is captured as a graph when it can be
/// ([`crate::model::graph`]), inside the clock: every sequence pays for its capture.
pub fn time_decode(
    model: &Model,
    prompt: &[u32],
    gen: &[u32],
    reps: usize,
    pb: &indicatif::ProgressBar,
) -> Result<DecodeTiming> {
    let steps: Vec<Tensor> = gen.iter().map(|t| row(&[*t], model)).collect::<Result<_>>()?;
    let mut timing = DecodeTiming { samples_ns: Vec::with_capacity(reps), graph: false };
    for i in 0..=reps {
        let mut cache = Cache::new(model.n_blocks());
        if !prompt.is_empty() {
            model.forward_last(&row(prompt, model)?, 0, &mut cache)?;
        }
        sync(model.device())?;
        let t = Instant::now();
        let graph = crate::model::graph::try_capture(model, &mut cache, prompt.len() + gen.len());
        for (j, (x, &token)) in steps.iter().zip(gen).enumerate() {
            match &graph {
                Some(g) => drop(g.step(token, &mut cache)?),
                None => drop(model.forward(x, prompt.len() + j, &mut cache)?),
            }
        }
        sync(model.device())?;
        let ns = t.elapsed().as_nanos() as u64;
        timing.graph = graph.is_some();
        if i > 0 {
            timing.samples_ns.push(ns);
            pb.inc(1);
        }
    }
    Ok(timing)
}

/// K and V bytes one cached token adds, in the compute dtype.
pub fn kv_bytes_per_token(model: &Model) -> u64 {
    let c = model.config();
    (2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * model.act_dtype().size_in_bytes()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU the decode timing runs eagerly, says so, and keeps one sample a repetition.
    #[test]
    fn decode_timing_on_cpu_is_eager() {
        let cfg = crate::model::LlamaConfig::preset("tiny").expect("tiny preset");
        let mut src = crate::model::synthetic::SyntheticSource::new(5);
        let model = Model::load(cfg, &mut src, &candle_core::Device::Cpu, candle_core::DType::F32).expect("tiny model");
        let pb = indicatif::ProgressBar::hidden();
        let t = time_decode(&model, &[1, 2, 3], &[4, 5], 2, &pb).expect("timing");
        assert!(!t.graph);
        assert_eq!(t.samples_ns.len(), 2);
        assert!(t.samples_ns.iter().all(|&ns| ns > 0));
    }

    #[test]
    fn tokens_per_second_statistics() {
        let (m, sd) = tokens_per_s(100, &[1_000_000_000, 500_000_000]);
        assert!((m - 150.0).abs() < 1e-9);
        assert!((sd - 70.710678).abs() < 1e-5);
    }
}
