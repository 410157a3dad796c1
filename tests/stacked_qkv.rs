//! q/k/v stacked into one weight (`MINILAB_STACK_QKV=1`; on the CPU an opt-in) against
//! the same model with each layer apart. On the CPU each output element is the same dot product in
//! both, so the logits must be equal bit for bit, through switches that stack, unstack (mixed
//! formats) and stack again, and the weights must occupy the same bytes (the layers view the stack).
//! The switch is process-wide, so this check has its own test binary.

use candle_core::{DType, Device, Tensor};
use minilab::model::{self, Cache, LayerKind, Model, ModelSpec};
use minilab::quant::{stacked, Precision};

fn load(stack: bool) -> Model {
    stacked::set_stacking(stack);
    model::load(&ModelSpec::Synthetic("tiny".into()), &Device::Cpu, DType::F32).expect("tiny model").model
}

/// Sets every q/k/v (and one MLP layer, which must not disturb the stack) in block `b` as given.
fn set(model: &mut Model, stack: bool, b: usize, [q, k, v]: [Precision; 3]) {
    stacked::set_stacking(stack);
    for (kind, p) in [(LayerKind::AttnQ, q), (LayerKind::AttnK, k), (LayerKind::AttnV, v), (LayerKind::FfnUp, q)] {
        let id = model.layer_ids().into_iter().find(|id| id.block == Some(b) && id.kind == kind).expect("layer");
        model.set_precision(id, p).expect("switch");
    }
}

/// A 10-token prompt (more rows than a decode launch takes) and two decode steps.
fn logits(model: &Model) -> candle_core::Result<Vec<Vec<f32>>> {
    let dev = Device::Cpu;
    let mut cache = Cache::new(model.n_blocks());
    let mut out = vec![model.forward(&Tensor::new(&[[3u32, 7, 1, 9, 4, 2, 2, 8, 0, 6]], &dev)?, 0, &mut cache)?];
    out.push(model.forward(&Tensor::new(&[[5u32]], &dev)?, 10, &mut cache)?);
    out.push(model.forward(&Tensor::new(&[[1u32]], &dev)?, 11, &mut cache)?);
    out.iter().map(|t| t.flatten_all()?.to_vec1::<f32>()).collect()
}

#[test]
fn stacked_qkv_computes_what_the_layers_apart_do() -> candle_core::Result<()> {
    let (mut stacked, mut apart) = (load(true), load(false));
    let blocks = stacked.n_blocks();
    assert_eq!((stacked.stacked_qkv(), apart.stacked_qkv()), (blocks, 0));
    use Precision::*;
    // (plan for every block, blocks stacked after it)
    // the last plan repeats: a switch to the format a layer has keeps the stack
    let plans = [
        ([Int8, Int8, Int8], blocks),
        ([Nf4, Nf4, Nf4], blocks),
        ([Int8, Nf4, Int8], 0),
        ([F16, F16, F16], blocks),
        ([F16, F16, F16], blocks),
    ];
    for (plan, want_stacked) in plans {
        for b in 0..blocks {
            set(&mut stacked, true, b, plan);
            set(&mut apart, false, b, plan);
        }
        assert_eq!(stacked.stacked_qkv(), want_stacked, "{plan:?}");
        assert_eq!(stacked.resident_bytes(), apart.resident_bytes(), "{plan:?}");
        // the switch also decides at each forward whether a stack is used
        stacked::set_stacking(true);
        let s = logits(&stacked)?;
        stacked::set_stacking(false);
        let a = logits(&apart)?;
        for (i, (s, a)) in s.iter().zip(&a).enumerate() {
            assert!(a.iter().all(|x| x.is_finite()), "{plan:?} call {i}: logits not finite");
            let same = s.iter().zip(a).filter(|(x, y)| x.to_bits() == y.to_bits()).count();
            assert_eq!(same, a.len(), "{plan:?} call {i}: {} of {} logits differ", a.len() - same, a.len());
        }
    }
    Ok(())
}
