//! Precision plan YAML: `PrecisionPlan::from_yaml` then `resolve` against a 4-block model.
//! Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minilab::model::{LayerId, LayerKind};
use minilab::plan::PrecisionPlan;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(plan) = PrecisionPlan::from_yaml(text, "fuzz") else { return };
    let mut ids: Vec<LayerId> = (0..4).flat_map(|b| LayerKind::BLOCK.map(|k| LayerId::block(b, k))).collect();
    ids.push(LayerId::output());
    if let Ok(assignment) = plan.resolve(&ids, "fuzz") {
        // What `sensitivity` writes must load back to the same assignment.
        let yaml = PrecisionPlan::to_yaml(&assignment, "fuzz");
        let back = PrecisionPlan::from_yaml(&yaml, "fuzz").and_then(|p| p.resolve(&ids, "fuzz"));
        assert_eq!(back.ok().as_ref(), Some(&assignment), "to_yaml does not round-trip:\n{yaml}");
    }
});
