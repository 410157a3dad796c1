//! The key/value cache: per block, buffers that grow by doubling on the GPU (so that a decode step
//! writes in place) or exact concatenations on the CPU.

use candle_core::{DType, Device, Result, Tensor};

/// Per-block key/value cache for decoding.
#[derive(Debug, Clone, Default)]
pub struct Cache {
    pub(super) kvs: Vec<Option<Kv>>,
    /// Scoring only: attention uses each call's own keys and values and keeps nothing.
    pub(super) scoring: bool,
}

/// One block's keys and values `[b, kv_heads, cap, head_dim]`, the first `len` positions filled.
#[derive(Debug, Clone)]
pub(super) struct Kv {
    pub(super) k: Tensor,
    pub(super) v: Tensor,
    pub(super) len: usize,
}

impl Cache {
    /// An empty cache for a model of `n_blocks` blocks.
    pub fn new(n_blocks: usize) -> Self {
        Self { kvs: vec![None; n_blocks], scoring: false }
    }

    /// A cache that keeps nothing: for scoring whole windows in one forward each, where keys and
    /// values are never needed again (no buffers to allocate and copy into).
    pub fn scoring() -> Self {
        Self { kvs: Vec::new(), scoring: true }
    }

    /// Tokens held (the next position to write).
    pub fn seq_len(&self) -> usize {
        self.kvs.iter().flatten().next().map_or(0, |kv| kv.len)
    }

    /// Counts `t` more tokens as held: a decode step wrote them at the old length.
    pub fn advance(&mut self, t: usize) {
        for kv in self.kvs.iter_mut().flatten() {
            kv.len += t;
        }
    }

    /// Every block's key and value buffers, in block order.
    pub fn buffers(&self) -> Vec<Tensor> {
        self.kvs.iter().flatten().flat_map(|kv| [kv.k.clone(), kv.v.clone()]).collect()
    }

    /// Positions every block's buffers hold (0 when any block has none).
    pub fn capacity(&self) -> usize {
        if self.kvs.is_empty() {
            return 0;
        }
        self.kvs.iter().map(|kv| kv.as_ref().map_or(0, |kv| kv.k.dim(2).unwrap_or(0))).min().unwrap_or(0)
    }

    /// Bytes allocated for the cached keys and values.
    pub fn bytes(&self) -> u64 {
        let t = |x: &Tensor| (x.elem_count() * x.dtype().size_in_bytes()) as u64;
        self.kvs.iter().flatten().map(|kv| t(&kv.k) + t(&kv.v)).sum()
    }
}

impl Kv {
    /// Appends `k`, `v` `[b, kv_heads, t, head_dim]`. `buffered`: into buffers that grow by doubling,
    /// one slice copy a token (the GPU decode path); otherwise by concatenation, so that the cache is
    /// always exactly `len` long.
    pub(super) fn append(kv: &mut Option<Kv>, k: Tensor, v: Tensor, buffered: bool) -> Result<()> {
        let t = k.dim(2)?;
        let len = kv.as_ref().map_or(0, |kv| kv.len);
        if !buffered {
            *kv = Some(match kv.take() {
                Some(old) => {
                    let (ok, ov) = (old.k.narrow(2, 0, len)?, old.v.narrow(2, 0, len)?);
                    Kv { k: Tensor::cat(&[&ok, &k], 2)?, v: Tensor::cat(&[&ov, &v], 2)?, len: len + t }
                }
                None => Kv { k, v, len: t },
            });
            return Ok(());
        }
        let (b, h, _, d) = k.dims4()?;
        Self::reserve(kv, (b, h, d), len + t, k.dtype(), k.device())?;
        if let Some(kv) = kv.as_mut() {
            kv.k.slice_set(&k.contiguous()?, 2, len)?;
            kv.v.slice_set(&v.contiguous()?, 2, len)?;
            kv.len = len + t;
        }
        Ok(())
    }

    /// Makes the buffers `[b, kv_heads, cap, head_dim]` (`shape` = (b, kv_heads, head_dim)) hold at
    /// least `need` positions, growing by doubling from 256 and keeping what is filled.
    pub(super) fn reserve(
        kv: &mut Option<Kv>,
        shape: (usize, usize, usize),
        need: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<()> {
        let cap = kv.as_ref().map_or(0, |kv| kv.k.dim(2).unwrap_or(0));
        if need <= cap {
            return Ok(());
        }
        let len = kv.as_ref().map_or(0, |kv| kv.len);
        let (b, h, d) = shape;
        let new_cap = need.next_power_of_two().max(256);
        let kb = Tensor::zeros((b, h, new_cap, d), dtype, dev)?;
        let vb = Tensor::zeros((b, h, new_cap, d), dtype, dev)?;
        if let Some(old) = kv.take().filter(|_| len > 0) {
            kb.slice_set(&old.k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            vb.slice_set(&old.v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
        }
        *kv = Some(Kv { k: kb, v: vb, len });
        Ok(())
    }

    /// The filled part of the keys and values, contiguous.
    pub(super) fn filled(&self) -> Result<(Tensor, Tensor)> {
        if self.k.dim(2)? == self.len {
            return Ok((self.k.clone(), self.v.clone()));
        }
        Ok((self.k.narrow(2, 0, self.len)?.contiguous()?, self.v.narrow(2, 0, self.len)?.contiguous()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GPU's growing buffers hold exactly what concatenation holds, across a regrowth.
    #[test]
    fn buffered_cache_equals_concatenated() -> Result<()> {
        let dev = Device::Cpu;
        let (mut cat, mut buf) = (None, None);
        for t in [5usize, 1, 1, 300, 1] {
            let k = Tensor::randn(0f32, 1.0, (1, 2, t, 4), &dev)?;
            let v = Tensor::randn(0f32, 1.0, (1, 2, t, 4), &dev)?;
            Kv::append(&mut cat, k.clone(), v.clone(), false)?;
            Kv::append(&mut buf, k, v, true)?;
        }
        let (cat, buf) = (cat.unwrap(), buf.unwrap());
        assert_eq!((cat.len, buf.len), (308, 308));
        assert_eq!(buf.k.dim(2)?, 512, "doubled past 256");
        let ((ck, cv), (bk, bv)) = (cat.filled()?, buf.filled()?);
        assert_eq!(ck.flatten_all()?.to_vec1::<f32>()?, bk.flatten_all()?.to_vec1::<f32>()?);
        assert_eq!(cv.flatten_all()?.to_vec1::<f32>()?, bv.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }
}
