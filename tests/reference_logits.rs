//! The all-f16 forward (computed in f32) agrees with an independent numpy implementation
//! (tools/reference/llama_reference.py: interleaved RoPE on the GGUF-permuted weights, float64).

mod common;

use candle_core::{DType, Device, Tensor};
use minilab::model::{self, Cache, ModelSpec};

#[test]
fn f16_logits_match_the_numpy_reference() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!("fixtures/smollm2_logits.json")).unwrap();
    let tokens: Vec<u32> = serde_json::from_value(fixture["tokens"].clone()).unwrap();
    let argmax: Vec<u32> = serde_json::from_value(fixture["argmax"].clone()).unwrap();
    let subset: Vec<u32> = serde_json::from_value(fixture["vocab_subset"].clone()).unwrap();
    let expected: Vec<Vec<f64>> = serde_json::from_value(fixture["logits_subset"].clone()).unwrap();
    let lse: Vec<f64> = serde_json::from_value(fixture["logsumexp"].clone()).unwrap();

    let spec = ModelSpec::Gguf(common::demo_model());
    let loaded = model::load(&spec, &Device::Cpu, DType::F32).unwrap();
    let ids = Tensor::new(tokens.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = loaded.model.forward(&ids, 0, &mut Cache::new(loaded.model.n_blocks())).unwrap();
    let logits = logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(logits.len(), 64);
    let mut max_delta = 0f64;
    for (pos, row) in logits.iter().enumerate() {
        let ours = row.iter().enumerate().fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0;
        assert_eq!(ours as u32, argmax[pos], "argmax differs at position {pos}");
        for (j, &id) in subset.iter().enumerate() {
            max_delta = max_delta.max((row[id as usize] as f64 - expected[pos][j]).abs());
        }
        let ours_lse = row.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        max_delta = max_delta.max((ours_lse - lse[pos]).abs());
    }
    assert!(max_delta <= 1e-2, "max |Δlogit| = {max_delta}");
    eprintln!("max |Δlogit| over 64 positions × 512 ids + log-sum-exp: {max_delta:.2e}");
}

#[test]
fn decode_with_the_cache_equals_the_full_forward() {
    let loaded = model::load(&ModelSpec::Synthetic("tiny".into()), &Device::Cpu, DType::F32).unwrap();
    let m = &loaded.model;
    let toks: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 256).collect();
    let full = m
        .forward(
            &Tensor::new(toks.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap(),
            0,
            &mut Cache::new(m.n_blocks()),
        )
        .unwrap();
    let mut cache = Cache::new(m.n_blocks());
    let prompt = Tensor::new(&toks[..8], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let mut rows = vec![m.forward(&prompt, 0, &mut cache).unwrap()];
    for (i, &t) in toks[8..].iter().enumerate() {
        let x = Tensor::new(&[t], &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        rows.push(m.forward(&x, 8 + i, &mut cache).unwrap());
    }
    assert_eq!(cache.seq_len(), 12);
    let stepped = Tensor::cat(&rows, 1).unwrap();
    let d = (full - stepped).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-4, "max |Δ| {d}");
}
