//! The fused prefill's wiring (the default; `MINILAB_FUSE_PREFILL=0` turns it off: RoPE, q's layout by head and the KV cache
//! writes in one pass, the attention's output laid out by token, the residual add with the next
//! norm, silu·up) against the plain path. On the CPU both run candle's ops in the same order, so
//! their logits must be equal bit for bit; a wrong position, cache slot or layout would not be.
//! The switch is process-wide, so this check has its own test binary.

use candle_core::{DType, Device, Tensor};
use minilab::kernels::prefill_ops;
use minilab::model::{self, Cache, Model, ModelSpec};

/// Logits of a prompt of 2 × 5 tokens, 3 more tokens each after it, one more, the same prompt
/// scored without a cache, and a continuation after a cache the other path filled.
fn logits(model: &Model, fused: bool, other: &mut Cache) -> candle_core::Result<(Vec<Tensor>, usize)> {
    prefill_ops::set_enabled(fused);
    let dev = Device::Cpu;
    let mut cache = Cache::new(model.n_blocks());
    let mut out = vec![model.forward(&Tensor::new(&[[3u32, 7, 1, 9, 4], [2, 2, 8, 0, 6]], &dev)?, 0, &mut cache)?];
    out.push(model.forward(&Tensor::new(&[[5u32, 1, 1], [0, 3, 9]], &dev)?, 5, &mut cache)?);
    out.push(model.forward(&Tensor::new(&[[4u32], [4]], &dev)?, 8, &mut cache)?);
    out.push(model.forward(&Tensor::new(&[[3u32, 7, 1, 9, 4, 8]], &dev)?, 0, &mut Cache::scoring())?);
    out.push(model.forward(&Tensor::new(&[[6u32, 6]], &dev)?, other.seq_len(), other)?);
    Ok((out, cache.seq_len()))
}

#[test]
fn fused_prefill_computes_what_the_plain_path_does() -> candle_core::Result<()> {
    let loaded = model::load(&ModelSpec::Synthetic("tiny".into()), &Device::Cpu, DType::F32).expect("tiny model");
    let model = &loaded.model;
    // each path continues a cache that the other filled: the two cache layouts must mix
    let fill = |fused: bool| -> candle_core::Result<Cache> {
        prefill_ops::set_enabled(fused);
        let mut c = Cache::new(model.n_blocks());
        model.forward(&Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu)?, 0, &mut c)?;
        Ok(c)
    };
    let (mut for_fused, mut for_plain) = (fill(false)?, fill(true)?);
    let fused = logits(model, true, &mut for_fused);
    let plain = logits(model, false, &mut for_plain);
    let ((fused, fused_len), (plain, plain_len)) = (fused?, plain?);
    assert_eq!((fused_len, plain_len), (9, 9));
    assert_eq!((for_fused.seq_len(), for_plain.seq_len()), (6, 6));
    for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
        assert_eq!(f.dims(), p.dims(), "call {i}");
        let (f, p) = (f.flatten_all()?.to_vec1::<f32>()?, p.flatten_all()?.to_vec1::<f32>()?);
        assert!(p.iter().all(|x| x.is_finite()), "call {i}: plain logits not finite");
        let same = f.iter().zip(&p).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        assert_eq!(same, p.len(), "call {i}: {} of {} logits differ", p.len() - same, p.len());
    }
    Ok(())
}
