//! Content digests of tensors: the identity of a model's weights, so that a resumed or merged scan
//! refuses a journal written from other weights that happen to share a name and settings.

use candle_core::{DType, Device, Result, Tensor};
use sha2::{Digest, Sha256};

/// sha256 of a tensor's dtype, shape and little-endian element bytes.
pub fn tensor_digest(t: &Tensor) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(format!("{:?}{:?}", t.dtype(), t.dims()).as_bytes());
    let t = t.flatten_all()?.to_device(&Device::Cpu)?;
    const CHUNK: usize = 1 << 14;
    let mut buf = Vec::with_capacity(CHUNK * 4);
    let mut feed = |bytes: &mut dyn Iterator<Item = u8>| {
        buf.clear();
        buf.extend(bytes);
        h.update(&buf);
    };
    match t.dtype() {
        DType::BF16 => {
            for c in t.to_vec1::<half::bf16>()?.chunks(CHUNK) {
                feed(&mut c.iter().flat_map(|x| x.to_bits().to_le_bytes()));
            }
        }
        DType::F16 => {
            for c in t.to_vec1::<half::f16>()?.chunks(CHUNK) {
                feed(&mut c.iter().flat_map(|x| x.to_bits().to_le_bytes()));
            }
        }
        _ => {
            for c in t.to_dtype(DType::F32)?.to_vec1::<f32>()?.chunks(CHUNK) {
                feed(&mut c.iter().flat_map(|x| x.to_le_bytes()));
            }
        }
    }
    Ok(h.finalize().into())
}

/// Hex of the first 16 bytes of the sha256 over `digests` in order.
pub fn combine(digests: &[[u8; 32]]) -> String {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_see_values_shapes_and_dtypes() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2., 3., 4.], &dev).unwrap();
        let d = tensor_digest(&a).unwrap();
        assert_eq!(d, tensor_digest(&a.clone()).unwrap());
        assert_ne!(d, tensor_digest(&Tensor::new(&[1f32, 2., 3., 5.], &dev).unwrap()).unwrap());
        assert_ne!(d, tensor_digest(&a.reshape((2, 2)).unwrap()).unwrap());
        assert_ne!(d, tensor_digest(&a.to_dtype(DType::BF16).unwrap()).unwrap());
        assert_ne!(combine(&[d, d]), combine(&[d]));
    }
}
