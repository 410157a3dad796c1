//! Checks a GPU build against the CPU: the same synthetic model, in f32 on both devices, every
//! format, logits on 64 real-looking token ids. Run on the GPU machine:
//! `device_check cuda` → one line per format with max |Δlogit| and argmax agreement.

use candle_core::{DType, Device, Tensor};
use minilab::model::{self, Cache, ModelSpec};
use minilab::plan::PrecisionPlan;
use minilab::quant::Precision;

fn logits(dev: &Device, p: Precision, tokens: &[u32]) -> minilab::Result<Vec<Vec<f32>>> {
    let mut loaded = model::load(&ModelSpec::Synthetic("llama-3.2-1b".into()), dev, DType::F32)?;
    let plan = PrecisionPlan::uniform(p);
    for (id, q) in plan.resolve(&loaded.model.layer_ids(), "check")? {
        loaded.model.set_precision(id, q)?;
    }
    let ids = Tensor::new(tokens, dev)?.unsqueeze(0)?;
    let out = loaded.model.forward(&ids, 0, &mut Cache::new(loaded.model.n_blocks()))?;
    Ok(out.squeeze(0)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
}

fn main() -> minilab::Result<()> {
    let dev = minilab::device::parse_device(&std::env::args().nth(1).unwrap_or_else(|| "cuda".into()))?;
    let tokens: Vec<u32> = (0..64u32).map(|i| 1 + (i * 7919 + 13) % 128_000).collect();
    for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
        let (a, b) = (logits(&Device::Cpu, p, &tokens)?, logits(&dev, p, &tokens)?);
        let (mut max_d, mut max_abs, mut same) = (0f32, 0f32, 0);
        for (ra, rb) in a.iter().zip(&b) {
            let am = |r: &Vec<f32>| {
                r.iter().enumerate().fold((0, f32::MIN), |m, (i, &x)| if x > m.1 { (i, x) } else { m }).0
            };
            same += usize::from(am(ra) == am(rb));
            for (x, y) in ra.iter().zip(rb) {
                max_d = max_d.max((x - y).abs());
                max_abs = max_abs.max(x.abs());
            }
        }
        println!("{p}: max |Δlogit| {max_d:.3e} (max |logit| {max_abs:.2}), argmax agrees at {same}/64 positions");
    }
    Ok(())
}
