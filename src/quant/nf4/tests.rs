//! NF4 against bitsandbytes' golden vectors and its own invariants.

use super::*;
use crate::quant::Precision;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde_json::Value;

const FIXTURE: &str = include_str!("../../../tests/fixtures/nf4_golden.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).expect("fixture parses")
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|b| f32::from_bits(b.as_u64().expect("u32 bits") as u32)).collect()
}

fn hex(v: &Value) -> Vec<u8> {
    let s = v.as_str().expect("hex string");
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The reference script's deterministic generator (exact in f32).
fn xorshift_irwin_hall(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
    let mut x = seed;
    (0..rows * cols)
        .map(|i| {
            let mut s = 0u32;
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                s += x >> 10;
            }
            let r = i / cols;
            let mut v = (s as i64 - (1 << 23)) as f32 * 2f32.powi(-23) * 2f32.powi(-(5 + (r % 4) as i32));
            if i % 997 == 0 {
                v *= 8.0;
            }
            v
        })
        .collect()
}

fn case_input(case: &Value) -> (Vec<f32>, usize, usize) {
    let shape: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let input = if let Some(bits) = case.get("input_bits") {
        f32s(bits)
    } else {
        let g = &case["generator"];
        assert_eq!(g["kind"], "xorshift_irwin_hall");
        let w = xorshift_irwin_hall(
            g["rows"].as_u64().unwrap() as usize,
            g["cols"].as_u64().unwrap() as usize,
            g["seed"].as_u64().unwrap() as u32,
        );
        assert_eq!(bits(&w[..8]), bits(&f32s(&case["input_head_bits"])), "generator drifted");
        w
    };
    (input, shape[0], shape[1])
}

#[test]
fn golden_codes_and_absmax_match_bitsandbytes() {
    let fx = fixture();
    assert_eq!(bits(&NF4_CODE), bits(&f32s(&fx["nf4_code_bits"])));
    for case in fx["nf4"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (w, o, i) = case_input(case);
        let q = Nf4Weight::quantize(&w, o, i, false);
        assert_eq!(q.packed, hex(&case["packed_hex"]), "{name}: packed codes");
        assert_eq!(bits(&q.block_absmax()), bits(&f32s(&case["absmax_bits"])), "{name}: absmax");
        let deq = q.dequantize();
        if let Some(expected) = case.get("dequant_bits") {
            assert_eq!(bits(&deq), bits(&f32s(expected)), "{name}: dequantized");
        }
        let sum: f64 = deq.iter().map(|&v| v as f64).sum();
        assert_eq!(sum, case["dequant_sum_f64"].as_f64().unwrap(), "{name}: dequantized sum");
    }
}

#[test]
fn golden_double_quant_matches_bitsandbytes() {
    let fx = fixture();
    assert_eq!(bits(&DYNAMIC_MAP_SIGNED), bits(&f32s(&fx["dynamic_map_bits"])));
    for case in fx["nf4"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let dq = &case["double_quant"];
        let (w, o, i) = case_input(case);
        let q = Nf4Weight::quantize(&w, o, i, true);
        assert_eq!(q.packed, hex(&case["packed_hex"]), "{name}: packed codes");
        let Nf4Absmax::DoubleQuant { q: qa, scales, offset, code } = &q.absmax else {
            panic!("{name}: not double quant")
        };
        assert_eq!(offset.to_bits() as u64, dq["offset_bits"].as_u64().unwrap(), "{name}: offset");
        assert_eq!(qa, &hex(&dq["q_hex"]), "{name}: quantized absmax");
        assert_eq!(bits(scales), bits(&f32s(&dq["scales_bits"])), "{name}: scales");
        assert_eq!(bits(&code[..]), bits(&DYNAMIC_MAP_SIGNED));
        assert_eq!(bits(&q.block_absmax()), bits(&f32s(&dq["absmax_dequant_bits"])), "{name}: absmax");
        let deq = q.dequantize();
        if let Some(expected) = dq.get("dequant_bits") {
            assert_eq!(bits(&deq), bits(&f32s(expected)), "{name}: dequantized");
        }
        let sum: f64 = deq.iter().map(|&v| v as f64).sum();
        assert_eq!(sum, dq["dequant_sum_f64"].as_f64().unwrap(), "{name}: dequantized sum");
    }
}

/// bitsandbytes' dQuantizeNF4 as written (nested comparisons), to prove `nf4_encode` equal.
#[allow(clippy::excessive_precision)]
fn tree(x: f32) -> u8 {
    if x > 0.03979014977812767 {
        if x > 0.3893125355243683 {
            if x > 0.6427869200706482 {
                if x > 0.8614784181118011 {
                    15
                } else {
                    14
                }
            } else if x > 0.5016634166240692 {
                13
            } else {
                12
            }
        } else if x > 0.2035212516784668 {
            if x > 0.2920137718319893 {
                11
            } else {
                10
            }
        } else if x > 0.1202552504837513 {
            9
        } else {
            8
        }
    } else if x > -0.33967943489551544 {
        if x > -0.13791173323988914 {
            if x > -0.045525018125772476 {
                7
            } else {
                6
            }
        } else if x > -0.23460740596055984 {
            5
        } else {
            4
        }
    } else if x > -0.6106329262256622 {
        if x > -0.4599952697753906 {
            3
        } else {
            2
        }
    } else if x > -0.8480964004993439 {
        1
    } else {
        0
    }
}

#[test]
fn encoder_equals_decision_tree() {
    let mut probes = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1.0, -1.0, 2.0];
    for &t in NF4_THRESHOLDS.iter().chain(NF4_CODE.iter()) {
        probes.extend([t, t.next_up(), t.next_down()]);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    probes.extend((0..20000).map(|_| rng.random_range(-1.1f32..1.1)));
    for x in probes {
        assert_eq!(nf4_encode(x), tree(x), "x = {x:e}");
    }
    for (c, &v) in NF4_CODE.iter().enumerate() {
        assert_eq!(nf4_encode(v) as usize, c, "a code value maps to itself");
    }
}

#[test]
fn pack_unpack_identity() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for n in [0usize, 1, 2, 63, 64, 65, 1001] {
        let codes: Vec<u8> = (0..n).map(|_| rng.random_range(0..16u8)).collect();
        let packed = pack(&codes);
        assert_eq!(packed.len(), n.div_ceil(2));
        assert_eq!(unpack(&packed, n), codes);
        if n > 0 {
            assert_eq!(packed[0] >> 4, codes[0], "first element in the high nibble");
        }
    }
}

fn normal_weights(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = Normal::new(0.0f32, 0.02).unwrap();
    let mut w: Vec<f32> = (0..n).map(|_| d.sample(&mut rng)).collect();
    if n > 10 {
        w[n / 3] = 0.4; // an outlier
    }
    w
}

#[test]
fn round_trip_error_bounded_by_codebook_gap() {
    let half_gap = NF4_CODE.windows(2).map(|p| p[1] - p[0]).fold(0f32, f32::max) / 2.0;
    for (o, i) in [(64usize, 100usize), (37, 29)] {
        let w = normal_weights(o * i, 3);
        for dq in [false, true] {
            let q = Nf4Weight::quantize(&w, o, i, dq);
            let absmax = q.block_absmax();
            let exact: Vec<f32> = w.chunks(NF4_BLOCKSIZE).map(|b| b.iter().fold(0f32, |m, v| m.max(v.abs()))).collect();
            for (k, (&a, &b)) in w.iter().zip(q.dequantize().iter()).enumerate() {
                let blk = k / NF4_BLOCKSIZE;
                let bound = half_gap * exact[blk] * (1.0 + 1e-6) + (absmax[blk] - exact[blk]).abs();
                assert!((a - b).abs() <= bound, "{o}×{i} dq={dq} elem {k}: {a} vs {b} (bound {bound})");
            }
        }
    }
}

#[test]
fn tensor_dequantize_equals_host_exactly() {
    for (o, i) in [(576usize, 1536usize), (64, 100), (3, 33)] {
        let w = normal_weights(o * i, 4);
        for dq in [false, true] {
            let q = Nf4Weight::quantize(&w, o, i, dq);
            let host = q.dequantize();
            let (packed, absmax) = q.to_tensors(&Device::Cpu).unwrap();
            let t = dequantize_tensor(&packed, &absmax, o, i, DType::F32).unwrap();
            assert_eq!(t.dims(), &[o, i]);
            let t: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
            let first_diff = t.iter().zip(&host).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(first_diff, None, "{o}×{i} dq={dq}: first differing element");
            let h: Vec<half::f16> = dequantize_tensor(&packed, &absmax, o, i, DType::F16)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert!(h.iter().zip(&host).all(|(a, b)| a.to_bits() == half::f16::from_f32(*b).to_bits()));
        }
    }
}

#[test]
fn byte_ff_survives_the_tensor_path() {
    // 0xFF is u8::MAX, which candle's index_select would read as a padding id.
    let q = Nf4Weight::quantize(&[0.5; 64], 1, 64, false);
    assert!(q.packed.iter().all(|&b| b == 0xFF));
    let (packed, absmax) = q.to_tensors(&Device::Cpu).unwrap();
    let t: Vec<f32> =
        dequantize_tensor(&packed, &absmax, 1, 64, DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(t, vec![0.5; 64]);
}

#[test]
fn tensor_dequantize_rejects_wrong_shapes() {
    let q = Nf4Weight::quantize(&normal_weights(64 * 4, 5), 4, 64, false);
    let (packed, absmax) = q.to_tensors(&Device::Cpu).unwrap();
    assert!(dequantize_tensor(&packed, &absmax, 4, 65, DType::F32).is_err());
    assert!(dequantize_tensor(&absmax, &absmax, 4, 64, DType::F32).is_err());
}

#[test]
fn storage_bytes_match_precision() {
    for (o, i) in [(64usize, 100usize), (3, 33), (576, 1536), (1, 1)] {
        let w = normal_weights(o * i, 6);
        let q = Nf4Weight::quantize(&w, o, i, false);
        assert_eq!(q.storage_bytes(), Precision::Nf4.weight_bytes(o, i));
        let q = Nf4Weight::quantize(&w, o, i, true);
        assert_eq!(q.storage_bytes(), Precision::Nf4Dq.weight_bytes(o, i));
    }
}

#[test]
fn zero_block_is_stored_as_cuda_does() {
    let mut w = normal_weights(128, 7);
    w[64..].fill(0.0);
    let q = Nf4Weight::quantize(&w, 2, 64, false);
    assert!(q.packed[32..].iter().all(|&b| b == 0), "all-zero block → code 0 (NaN path)");
    assert!(q.dequantize()[64..].iter().all(|&v| v == 0.0 && !v.is_nan()));
    let empty = Nf4Weight::quantize(&[], 0, 7, true);
    assert!(empty.is_empty() && empty.dequantize().is_empty());
}
