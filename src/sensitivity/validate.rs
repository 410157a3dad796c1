//! End-to-end measurement of whole plans on the held-out text: accuracy against the all-f16
//! model, and speed with the bench code. Used for the chosen plan, the frontier and baselines.

use super::allocate::LayerOptions;
use super::scan::ScanItem;
use crate::bench;
use crate::error::Result;
use crate::eval::{self, EvalSummary, References};
use crate::model::{LayerId, Model};
use crate::quant::Precision;
use std::collections::BTreeMap;

/// Held-out windows with their all-f16 reference distributions.
pub struct HeldOut {
    pub windows: Vec<Vec<u32>>,
    pub refs: References,
}

/// Speed settings for frontier points (fewer reps than `minilab bench`, stated in the report).
#[derive(Debug, Clone)]
pub struct SpeedOpts {
    pub feed: Vec<u32>,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub reps: usize,
}

/// One measured plan.
#[derive(Debug, Clone)]
pub struct Measured {
    pub summary: EvalSummary,
    pub weight_bytes: u64,
    /// Bytes of the tensors the layers hold on the device in this plan (counted, not the plan's figure).
    pub resident_bytes: u64,
    pub prefill_tps: Option<f64>,
    pub decode_tps: Option<f64>,
}

/// References of the all-f16 model on `windows` (call before switching any layer).
pub fn held_out(model: &Model, windows: Vec<Vec<u32>>, k: usize) -> Result<HeldOut> {
    let pb = crate::progress::bar(windows.len() as u64, "f16 ref");
    let refs = eval::references(model, &windows, k, &pb)?;
    pb.finish_and_clear();
    Ok(HeldOut { windows, refs })
}

/// Re-encodes the model to `assignment` (layers already in their format are left alone).
pub fn apply(model: &mut Model, assignment: &BTreeMap<LayerId, Precision>) -> Result<()> {
    for (id, p) in assignment {
        model.set_precision(*id, *p)?;
    }
    Ok(())
}

/// Applies `assignment` and measures it on the held-out windows (and speed, when asked).
pub fn measure(
    model: &mut Model,
    held: &HeldOut,
    assignment: &BTreeMap<LayerId, Precision>,
    speed: Option<&SpeedOpts>,
    label: &str,
) -> Result<Measured> {
    apply(model, assignment)?;
    let pb = crate::progress::bar(held.windows.len() as u64, label);
    let stats = eval::score(model, &held.windows, Some(&held.refs), &pb)?;
    pb.finish_and_clear();
    let (prefill_tps, decode_tps) = match speed {
        Some(s) => {
            let hidden = indicatif::ProgressBar::hidden();
            let pp = bench::time_prefill(model, &s.feed[..s.n_prompt], s.reps, &hidden)?;
            let tg = bench::time_decode(model, &[], &s.feed[..s.n_gen], s.reps, &hidden)?;
            (Some(bench::tokens_per_s(s.n_prompt, &pp).0), Some(bench::tokens_per_s(s.n_gen, &tg.samples_ns).0))
        }
        None => (None, None),
    };
    Ok(Measured {
        summary: eval::summarize(&stats),
        weight_bytes: model.weight_bytes(),
        resident_bytes: model.resident_bytes(),
        prefill_tps,
        decode_tps,
    })
}

/// Allocator input from scan results: every layer in model order, f16 (score 0) plus each scanned
/// format. A layer missing from the scan is an error (the scan must be complete).
pub fn layer_options(
    model: &Model,
    items: &[ScanItem],
    formats: &[Precision],
) -> std::result::Result<Vec<LayerOptions>, String> {
    let scores: BTreeMap<(String, Precision), f64> =
        items.iter().map(|i| ((i.layer.clone(), i.format), i.score)).collect();
    model
        .layer_ids()
        .into_iter()
        .map(|id| {
            let (o, i) = model.linear(id).map_or((0, 0), |l| l.shape());
            let mut choices = vec![super::allocate::Choice {
                precision: Precision::F16,
                bytes: Precision::F16.weight_bytes(o, i),
                score: 0.0,
            }];
            for f in formats {
                let score =
                    *scores.get(&(id.to_string(), *f)).ok_or_else(|| format!("no scan result for {id} in {f}"))?;
                choices.push(super::allocate::Choice { precision: *f, bytes: f.weight_bytes(o, i), score });
            }
            Ok(LayerOptions { id: id.to_string(), choices })
        })
        .collect()
}

/// The per-layer formats of an allocation.
pub fn assignment_of(layers: &[LayerOptions], choice: &[usize]) -> BTreeMap<LayerId, Precision> {
    layers
        .iter()
        .zip(choice)
        .filter_map(|(l, &c)| LayerId::parse(&l.id).map(|id| (id, l.choices[c].precision)))
        .collect()
}
