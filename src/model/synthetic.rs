//! Seeded random weights of a real architecture, for speed and memory work without a download.
//! Linears ~ N(0, 0.02²) (the usual init scale), norms ≈ 1: realistic for kernels, meaningless as text.

use super::weights::WeightSource;
use crate::error::Result;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

/// A source of deterministic pseudo-random tensors.
pub struct SyntheticSource {
    seed: u64,
}

impl SyntheticSource {
    /// Weights drawn from `seed`; every tensor gets its own stream derived from its name.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// `n` approximately normal values (Irwin–Hall of four uniforms) with standard deviation `std`.
fn normal_values(n: usize, seed: u64, mean: f32, std: f32) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, chunk)| {
        let mut s = splitmix(seed ^ (c as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        for v in chunk.iter_mut() {
            let mut acc = 0f32;
            for _ in 0..4 {
                s = splitmix(s);
                acc += (s >> 40) as f32 / (1u64 << 24) as f32;
            }
            // sum of 4 U(0,1): mean 2, variance 1/3
            *v = mean + std * (acc - 2.0) * 3f32.sqrt();
        }
    });
    out
}

impl WeightSource for SyntheticSource {
    fn tensor(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let seed = self.seed ^ name_hash(name);
        let (mean, std) = if name.contains("norm") { (1.0, 0.05) } else { (0.0, 0.02) };
        let v = normal_values(n, seed, mean, std);
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?.to_dtype(dtype)?)
    }

    fn has(&self, _name: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_weights_are_seeded_and_realistic() {
        let mut a = SyntheticSource::new(7);
        let x = a.tensor("blk.0.attn_q.weight", &[64, 256], DType::F32).unwrap();
        let y = SyntheticSource::new(7).tensor("blk.0.attn_q.weight", &[64, 256], DType::F32).unwrap();
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(v, y.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt();
        assert!(mean.abs() < 2e-3 && (std - 0.02).abs() < 2e-3, "mean {mean} std {std}");
        let z = a.tensor("blk.1.attn_q.weight", &[64, 256], DType::F32).unwrap();
        assert_ne!(v, z.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
}
