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
}
