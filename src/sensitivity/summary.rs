//! `summary.json` of a sensitivity run: everything the report and `minilab plot` need besides
//! `scan.jsonl` and `frontier.csv`.

use crate::eval::EvalSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Predicted summed scores of both strategies at the user's budget.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Predicted {
    pub greedy: f64,
    pub optimal: f64,
    /// greedy − optimal (≥ 0: how much the exact knapsack gains).
    pub gap: f64,
    pub chosen: f64,
}

/// One baseline plan measured on the held-out text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Baseline {
    pub label: String,
    pub weight_bytes: u64,
    pub kld_mean: f64,
    pub ppl: f64,
}

/// The whole summary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub model: String,
    pub settings_hash: String,
    pub settings: serde_json::Value,
    pub budget_bytes: u64,
    pub plan_weight_bytes: u64,
    pub min_bytes: u64,
    pub max_bytes: u64,
    pub strategy: String,
    pub predicted: Predicted,
    /// Held-out measurement of the chosen plan.
    pub measured: EvalSummary,
    /// The f16 model on the same held-out windows.
    pub f16: EvalSummary,
    /// Layers per format in the chosen plan.
    pub formats: BTreeMap<String, usize>,
    pub baselines: Vec<Baseline>,
    /// Wall time of each phase, seconds.
    pub phases_s: BTreeMap<String, f64>,
    pub notes: Vec<String>,
    /// Set for synthetic weights or text: the accuracy figures mean nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Seconds per step of the scan (encode, blocks, head, metrics, …), summed over items.
    #[serde(default)]
    pub scan_steps_s: BTreeMap<String, f64>,
    /// The compute device (`cpu`, `cuda:0`).
    #[serde(default)]
    pub device: String,
    /// Calibration windows per forward.
    #[serde(default)]
    pub windows_per_batch: usize,
    /// Where the scan's prefix cache lived: `device`, or `host` (streamed per use).
    #[serde(default)]
    pub prefix_cache: String,
    /// Device memory in use at the end of the run, the largest reading (CPU: peak resident set).
    #[serde(default)]
    pub peak_device_bytes: u64,
    /// The decode-time model and how well it predicted (absent when none was measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<SpeedSummary>,
}

/// Predicted and measured decode speed of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpeedSummary {
    /// The speed limit asked for, µs per token.
    pub max_decode_us: Option<f64>,
    /// The share of the limit held back for the time model's error (the plan targets
    /// `max_decode_us × (1 − speed_margin)`).
    #[serde(default)]
    pub speed_margin: f64,
    /// Per-token cost of everything that is not a linear, µs.
    pub fixed_us: f64,
    /// Measured all-f16 decode step, µs.
    pub f16_step_us: f64,
    /// What a block pays per token for q/k/v in more than one format, µs.
    #[serde(default)]
    pub split_qkv_us: f64,
    /// What a block pays per token for gate and up in two formats, µs.
    #[serde(default)]
    pub split_gate_up_us: f64,
    /// Predicted tokens/s of the chosen plan.
    pub predicted_decode_tps: f64,
    /// Measured tg128 tokens/s of the chosen plan (when the frontier was timed).
    pub measured_decode_tps: Option<f64>,
    /// |predicted − measured| ÷ measured over the frontier points with both, in %.
    pub error_pct_median: Option<f64>,
    pub error_pct_max: Option<f64>,
    /// Frontier points compared.
    pub points_compared: usize,
    /// The same errors over the uniform points, which the model predicts at its own steps timed
    /// minutes earlier: how far the machine drifted during the run, in %.
    #[serde(default)]
    pub drift_pct_median: Option<f64>,
    #[serde(default)]
    pub drift_pct_max: Option<f64>,
}

impl Summary {
    /// The first figure that is NaN or infinite, by its path in the file. JSON has no NaN (serde
    /// writes `null`, which `minilab plot` could not read back), so such a summary is an error.
    pub fn first_non_finite(&self) -> Option<String> {
        let p = &self.predicted;
        let predicted = [("greedy", p.greedy), ("optimal", p.optimal), ("gap", p.gap), ("chosen", p.chosen)];
        if let Some((k, _)) = predicted.iter().find(|(_, v)| !v.is_finite()) {
            return Some(format!("predicted.{k}"));
        }
        for (name, e) in [("measured", &self.measured), ("f16", &self.f16)] {
            if let Some((k, _)) = e.first_non_finite() {
                return Some(format!("{name}.{k}"));
            }
        }
        if let Some(b) = self.baselines.iter().find(|b| !(b.kld_mean.is_finite() && b.ppl.is_finite())) {
            return Some(format!("baselines[{}]", b.label));
        }
        if let Some(sp) = &self.speed {
            let all = [
                Some(sp.fixed_us),
                Some(sp.f16_step_us),
                Some(sp.split_qkv_us),
                Some(sp.split_gate_up_us),
                Some(sp.predicted_decode_tps),
                sp.measured_decode_tps,
            ];
            let errors = [sp.error_pct_median, sp.error_pct_max, sp.drift_pct_median, sp.drift_pct_max];
            if all.iter().chain(&errors).flatten().any(|v| !v.is_finite()) {
                return Some("speed".into());
            }
        }
        let times = self
            .phases_s
            .iter()
            .map(|(k, v)| ("phases_s", k, v))
            .chain(self.scan_steps_s.iter().map(|(k, v)| ("scan_steps_s", k, v)));
        times.into_iter().find(|(_, _, v)| !v.is_finite()).map(|(map, k, _)| format!("{map}.{k}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(ppl: f64) -> EvalSummary {
        EvalSummary { ppl, ppl_stderr: 0.1, nll_mean: ppl.ln(), tokens: 10, kld: None }
    }

    #[test]
    fn a_non_finite_figure_is_named_by_its_path() {
        let mut s = Summary {
            model: "m".into(),
            settings_hash: "h".into(),
            settings: serde_json::json!({}),
            budget_bytes: 1,
            plan_weight_bytes: 1,
            min_bytes: 1,
            max_bytes: 2,
            strategy: "greedy".into(),
            predicted: Predicted { greedy: 1.0, optimal: 1.0, gap: 0.0, chosen: 1.0 },
            measured: eval(10.0),
            f16: eval(9.0),
            formats: BTreeMap::new(),
            baselines: vec![Baseline { label: "random".into(), weight_bytes: 1, kld_mean: 0.1, ppl: 10.0 }],
            phases_s: BTreeMap::from([("scan".into(), 1.0)]),
            notes: vec![],
            warning: None,
            scan_steps_s: BTreeMap::new(),
            device: "cpu".into(),
            windows_per_batch: 1,
            prefix_cache: "host".into(),
            peak_device_bytes: 0,
            speed: None,
        };
        assert_eq!(s.first_non_finite(), None);
        s.baselines[0].kld_mean = f64::NAN;
        assert_eq!(s.first_non_finite().as_deref(), Some("baselines[random]"));
        s.measured.ppl = f64::INFINITY;
        assert_eq!(s.first_non_finite().as_deref(), Some("measured.ppl"));
        s.predicted.gap = f64::NAN;
        assert_eq!(s.first_non_finite().as_deref(), Some("predicted.gap"));
    }
}
