//! What a decode step pays beyond its layers when a fused group holds mixed formats.
//!
//! At decode on a GPU, q/k/v run as one launch (with RoPE, the cache append and the folded norm)
//! and gate/up as one (with silu·up). Before the launch of mixed formats (gemv_mixed.cuh, session
//! 29), and still with `MINILAB_FUSE_MIXED=0`, a plan that splits a group runs its layers one by one,
//! with the norm, RoPE or silu·up as launches of their own. On an H100 (issue 11 session 28,
//! synthetic 3B) the sensitivity frontier's plans, which split groups freely, then ran 7–18 % slower
//! than their layers' sum predicted, while plans uniform within each group came within 3 %. So the
//! model times, per group kind, one plan with that group split in every block and charges each split
//! group of a plan the excess over the layer sum: about 17 µs a group then, 0.3–1.2 µs with the
//! mixed launch. Where nothing is fused (the CPU) nothing is charged: the charge measured there was
//! the VM's noise, 0 to 53 µs a group from run to run.

use crate::model::{LayerId, LayerKind, Model};
use crate::quant::Precision;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The layers that one decode launch reads together when they share a format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Qkv,
    GateUp,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::Qkv, Group::GateUp];

    fn members(self) -> &'static [LayerKind] {
        match self {
            Group::Qkv => &[LayerKind::AttnQ, LayerKind::AttnK, LayerKind::AttnV],
            Group::GateUp => &[LayerKind::FfnGate, LayerKind::FfnUp],
        }
    }

    /// The format of `id` in the plan that splits this group in every block: its first member
    /// (q, gate) in f16, every other layer in `other`.
    pub fn split_plan(self, id: LayerId, other: Precision) -> Precision {
        if id.block.is_some() && id.kind == self.members()[0] {
            Precision::F16
        } else {
            other
        }
    }
}

/// Extra µs per token a block pays for each fused group whose layers hold mixed formats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitCost {
    /// q/k/v in more than one format.
    pub qkv_us: f64,
    /// gate and up in two formats.
    pub gate_up_us: f64,
}

impl SplitCost {
    pub fn of(&self, g: Group) -> f64 {
        match g {
            Group::Qkv => self.qkv_us,
            Group::GateUp => self.gate_up_us,
        }
    }

    pub fn set(&mut self, g: Group, us: f64) {
        match g {
            Group::Qkv => self.qkv_us = us,
            Group::GateUp => self.gate_up_us = us,
        }
    }

    /// What a plan of `(layer, format)` pays for its split groups, µs per token.
    pub fn charge(&self, plan: impl IntoIterator<Item = (LayerId, Precision)>) -> f64 {
        let counts = split_groups(plan);
        Group::ALL.iter().zip(counts).map(|(&g, n)| self.of(g) * n as f64).sum()
    }

    pub fn is_sane(&self) -> bool {
        [self.qkv_us, self.gate_up_us].iter().all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// How many blocks of a plan split each group of [`Group::ALL`]. A group split means at least two
/// of its layers in different formats; a layer the plan leaves out does not count.
pub fn split_groups(plan: impl IntoIterator<Item = (LayerId, Precision)>) -> [usize; 2] {
    let mut seen: BTreeMap<(usize, usize), Vec<Precision>> = BTreeMap::new();
    for (id, p) in plan {
        let Some(block) = id.block else { continue };
        for (gi, g) in Group::ALL.iter().enumerate() {
            if g.members().contains(&id.kind) {
                seen.entry((gi, block)).or_default().push(p);
            }
        }
    }
    let mut counts = [0; 2];
    for ((gi, _), ps) in seen {
        if ps.iter().any(|p| *p != ps[0]) {
            counts[gi] += 1;
        }
    }
    counts
}

/// The plan `model` holds now, as `(layer, format)`.
pub fn model_plan(model: &Model) -> Vec<(LayerId, Precision)> {
    model.layer_ids().into_iter().filter_map(|id| model.linear(id).map(|l| (id, l.precision()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Precision::*;

    fn id(block: usize, kind: LayerKind) -> LayerId {
        LayerId { block: Some(block), kind }
    }

    fn block(b: usize, [q, k, v, o, g, u, d]: [Precision; 7]) -> Vec<(LayerId, Precision)> {
        LayerKind::BLOCK.iter().zip([q, k, v, o, g, u, d]).map(|(&kind, p)| (id(b, kind), p)).collect()
    }

    #[test]
    fn a_group_is_split_when_two_of_its_layers_differ() {
        let mut plan = block(0, [Int8, Int8, Int8, F16, Nf4, Nf4, F16]);
        plan.extend(block(1, [F16, Int8, Int8, Int8, Nf4, Int8, Nf4]));
        plan.extend(block(2, [Int8, Int8, Nf4, Int8, F16, F16, Int8]));
        plan.push((LayerId { block: None, kind: LayerKind::Output }, F16));
        assert_eq!(split_groups(plan.clone()), [2, 1]);
        let cost = SplitCost { qkv_us: 3.0, gate_up_us: 5.0 };
        assert_eq!(cost.charge(plan), 11.0);
        let uniform = block(0, [Nf4; 7]);
        assert_eq!(split_groups(uniform.clone()), [0, 0]);
        assert_eq!(cost.charge(uniform), 0.0);
    }

    #[test]
    fn each_split_plan_splits_only_its_group() {
        for g in Group::ALL {
            let plan: Vec<_> = LayerKind::BLOCK
                .iter()
                .map(|&kind| (id(4, kind), g.split_plan(id(4, kind), Nf4)))
                .chain([(LayerId { block: None, kind: LayerKind::Output }, Nf4)])
                .collect();
            let want = match g {
                Group::Qkv => [1, 0],
                Group::GateUp => [0, 1],
            };
            assert_eq!(split_groups(plan.clone()), want, "{g:?}");
            assert_eq!(plan.iter().filter(|(_, p)| *p == F16).count(), 1, "{g:?}: one layer in f16");
        }
    }

    #[test]
    fn a_negative_or_nan_cost_is_not_sane() {
        assert!(SplitCost::default().is_sane());
        assert!(!SplitCost { qkv_us: -1.0, gate_up_us: 0.0 }.is_sane());
        assert!(!SplitCost { qkv_us: 0.0, gate_up_us: f64::NAN }.is_sane());
    }
}
