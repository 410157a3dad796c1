//! transformers + bitsandbytes: a `quantization_config` (`BitsAndBytesConfig`) for a plan.
//!
//! bitsandbytes quantizes every `nn.Linear` of a model to one format (`load_in_8bit` or
//! `load_in_4bit`) and keeps the modules named in `llm_int8_skip_modules` in 16 bits. So a plan is
//! expressible only when it has at most two levels, one of them f16. For a plan of three levels,
//! [`nearest_two_level`] finds the two-level plan of no more bytes with the least predicted damage.

use crate::model::LayerId;
use crate::quant::Precision;
use crate::sensitivity::allocate::{self, LayerOptions};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The formats a plan uses, from the most to the least precise.
pub fn levels(assignment: &BTreeMap<LayerId, Precision>) -> Vec<Precision> {
    assignment.values().copied().collect::<BTreeSet<_>>().into_iter().collect()
}

/// The `quantization_config` of a plan of at most two levels (f16 + one quantized format), or why
/// not. Every f16 layer is listed in `llm_int8_skip_modules` by its full Hugging Face module name
/// (`model.layers.3.self_attn.q_proj`, `lm_head`). An all-f16 plan needs no config: `Value::Null`.
pub fn quantization_config(assignment: &BTreeMap<LayerId, Precision>) -> Result<Value, String> {
    let lv = levels(assignment);
    let quantized: Vec<Precision> = lv.iter().copied().filter(|p| *p != Precision::F16).collect();
    let q = match quantized.as_slice() {
        [] => return Ok(Value::Null),
        [q] => *q,
        _ => {
            let names: Vec<&str> = lv.iter().map(|p| p.name()).collect();
            return Err(format!(
                "the plan has {} levels ({}); bitsandbytes loads one quantized format per model plus 16-bit skipped modules",
                lv.len(),
                names.join(", ")
            ));
        }
    };
    // In model order: the blocks, then lm_head.
    let mut f16: Vec<LayerId> = assignment.iter().filter(|(_, p)| **p == Precision::F16).map(|(id, _)| *id).collect();
    f16.sort_by_key(|id| (id.block.is_none(), *id));
    let skip: Vec<String> = f16.iter().map(LayerId::hf_name).collect();
    Ok(match q {
        // LLM.int8(): the same per-row absmax int8 weights; bitsandbytes also keeps activation
        // outliers above the threshold in 16 bits (minilab's int8 is weight-only).
        Precision::Int8 => json!({
            "quant_method": "bitsandbytes",
            "load_in_8bit": true,
            "load_in_4bit": false,
            "llm_int8_threshold": 6.0,
            "llm_int8_skip_modules": skip,
        }),
        _ => json!({
            "quant_method": "bitsandbytes",
            "load_in_8bit": false,
            "load_in_4bit": true,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": q == Precision::Nf4Dq,
            "bnb_4bit_compute_dtype": "float16",
            "bnb_4bit_quant_storage": "uint8",
            "llm_int8_skip_modules": skip,
        }),
    })
}

/// A two-level plan found for a plan bitsandbytes cannot express.
#[derive(Debug, Clone, PartialEq)]
pub struct TwoLevel {
    /// The quantized format it keeps besides f16.
    pub format: Precision,
    /// Its per-layer formats.
    pub assignment: BTreeMap<LayerId, Precision>,
    /// Its weight bytes (fixed bytes included).
    pub bytes: u64,
    /// Its predicted score (the sum of the scanned single-layer scores).
    pub predicted: f64,
}

/// The two-level plan (f16 + one scanned format) of at most `max_bytes` with the least predicted
/// score, by the greedy allocator restricted to those two choices per layer. `None` when no
/// two-level plan fits (the budget is below every all-quantized plan).
pub fn nearest_two_level(layers: &[LayerOptions], fixed: u64, max_bytes: u64) -> Option<TwoLevel> {
    let formats: BTreeSet<Precision> =
        layers.iter().flat_map(|l| l.choices.iter().map(|c| c.precision)).filter(|p| *p != Precision::F16).collect();
    let mut best: Option<TwoLevel> = None;
    for q in formats {
        let two: Vec<LayerOptions> = layers
            .iter()
            .map(|l| LayerOptions {
                id: l.id.clone(),
                choices: l
                    .choices
                    .iter()
                    .copied()
                    .filter(|c| c.precision == Precision::F16 || c.precision == q)
                    .collect(),
            })
            .collect();
        let Ok(a) = allocate::greedy(&two, fixed, max_bytes) else { continue };
        let assignment = crate::sensitivity::validate::assignment_of(&two, &a.choice);
        let cand = TwoLevel { format: q, assignment, bytes: a.bytes, predicted: a.predicted };
        if best.as_ref().is_none_or(|b| cand.predicted < b.predicted) {
            best = Some(cand);
        }
    }
    best
}

/// The `plan.bnb.json` document of a sensitivity run: the config, and for a plan of three levels
/// the two-level plan it stands for (also returned, to be written as `plan.bnb.yaml`).
pub fn plan_document(
    assignment: &BTreeMap<LayerId, Precision>,
    layers: &[LayerOptions],
    fixed: u64,
    metric: &str,
) -> (Value, Option<TwoLevel>) {
    let lv: Vec<&str> = levels(assignment).iter().map(|p| p.name()).collect();
    let choice: Vec<usize> = layers
        .iter()
        .map(|l| {
            let p = LayerId::parse(&l.id).and_then(|id| assignment.get(&id).copied());
            l.choices.iter().position(|c| Some(c.precision) == p).unwrap_or(0)
        })
        .collect();
    let plan_bytes = allocate::plan_bytes(layers, fixed, &choice);
    let plan_pred = allocate::predicted_score(layers, &choice);
    let usage = "BitsAndBytesConfig(**doc[\"quantization_config\"]) → AutoModelForCausalLM.from_pretrained(..., quantization_config=...)";
    match quantization_config(assignment) {
        Ok(cfg) => (json!({"plan_levels": lv, "expressible": true, "usage": usage, "quantization_config": cfg}), None),
        Err(why) => {
            let near = nearest_two_level(layers, fixed, plan_bytes);
            let doc = match &near {
                Some(n) => json!({
                    "plan_levels": lv,
                    "expressible": false,
                    "note": format!("{why}: this config is the nearest two-level plan (f16 + {}) of no more bytes, written as plan.bnb.yaml", n.format),
                    "usage": usage,
                    "source_plan": {"weight_bytes": plan_bytes, "predicted": plan_pred},
                    "two_level_plan": {"format": n.format.name(), "formats": counts(&n.assignment), "weight_bytes": n.bytes, "predicted": n.predicted},
                    "metric": metric,
                    "quantization_config": quantization_config(&n.assignment).unwrap_or(Value::Null),
                }),
                None => {
                    json!({"plan_levels": lv, "expressible": false, "note": format!("{why}, and no two-level plan fits in {plan_bytes} bytes"), "quantization_config": Value::Null})
                }
            };
            (doc, near)
        }
    }
}

fn counts(a: &BTreeMap<LayerId, Precision>) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for p in a.values() {
        *m.entry(p.name()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LayerKind;
    use crate::sensitivity::allocate::Choice;

    fn a(list: &[(LayerId, Precision)]) -> BTreeMap<LayerId, Precision> {
        list.iter().copied().collect()
    }

    #[test]
    fn two_level_plan_skips_the_f16_modules_by_full_name() {
        let q = LayerId::block(1, LayerKind::AttnQ);
        let d = LayerId::block(11, LayerKind::FfnDown);
        let plan = a(&[(q, Precision::Nf4), (d, Precision::F16), (LayerId::output(), Precision::F16)]);
        let c = quantization_config(&plan).unwrap();
        assert_eq!(c["load_in_4bit"], true);
        assert_eq!(c["bnb_4bit_quant_type"], "nf4");
        assert_eq!(c["llm_int8_skip_modules"], json!(["model.layers.11.mlp.down_proj", "lm_head"]));
        let plan = a(&[(q, Precision::Int8), (LayerId::output(), Precision::Int8)]);
        let c = quantization_config(&plan).unwrap();
        assert_eq!((c["load_in_8bit"].clone(), c["llm_int8_skip_modules"].clone()), (json!(true), json!([])));
    }

    #[test]
    fn three_levels_are_refused() {
        let plan = a(&[
            (LayerId::block(0, LayerKind::AttnQ), Precision::Nf4),
            (LayerId::block(0, LayerKind::AttnK), Precision::Int8),
            (LayerId::output(), Precision::F16),
        ]);
        assert!(quantization_config(&plan).unwrap_err().contains("3 levels"));
    }

    fn opts(id: &str, n: u64, s8: f64, s4: f64) -> LayerOptions {
        let c = |precision, bytes, score| Choice { precision, bytes, score };
        LayerOptions {
            id: id.into(),
            choices: vec![c(Precision::F16, 2 * n, 0.0), c(Precision::Int8, n, s8), c(Precision::Nf4, n / 2, s4)],
        }
    }

    #[test]
    fn nearest_two_level_plan_fits_and_picks_the_lower_score() {
        // a hates nf4; b does not care; c minds nf4 a little. Plan: a f16, b nf4, c int8 = 350 bytes.
        let layers = vec![
            opts("blk.0.attn_q", 100, 0.01, 1.0),
            opts("blk.0.attn_k", 100, 0.0, 0.0),
            opts("blk.0.attn_v", 100, 0.0, 0.5),
        ];
        let id = |s: &str| LayerId::parse(s).unwrap();
        let three = a(&[
            (id("blk.0.attn_q"), Precision::F16),
            (id("blk.0.attn_k"), Precision::Nf4),
            (id("blk.0.attn_v"), Precision::Int8),
        ]);
        let (doc, near) = plan_document(&three, &layers, 0, "kld");
        let near = near.unwrap();
        // int8 + f16: all int8 (300 bytes, 0.01); nf4 + f16: a in f16 (300 bytes, 0.5)
        assert_eq!(near.format, Precision::Int8);
        assert_eq!(near.bytes, 300);
        assert!(near.bytes <= 350, "no more bytes than the plan");
        assert!((near.predicted - 0.01).abs() < 1e-12);
        assert_eq!(doc["expressible"], false);
        assert_eq!(doc["source_plan"]["weight_bytes"], 350);
        assert_eq!(doc["quantization_config"]["load_in_8bit"], true);
    }
}
