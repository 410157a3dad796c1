//! Plain parameters shared by the candle ops (`op.rs`, `attention.rs`) and the CUDA launchers
//! (`cuda/`), so that the launchers depend on no op module.

/// How a linear's weight is stored; the values are gemv_accumulate.cuh's `Format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Dense = 0,
    Int8 = 1,
    Nf4 = 2,
}

/// Shapes of one decode-attention call.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct AttnDecode {
    pub heads: usize,
    pub kv_heads: usize,
    pub cap: usize,
    pub d: usize,
    pub scale: f32,
}

/// Threads of an attn_split block (attention.cu's SPLIT_THREADS).
pub(crate) const SPLIT_THREADS: usize = 128;
/// Query heads an attn_split block serves at most (attention.cu's MAXG).
const MAX_GROUP: usize = 8;
/// Dynamic shared memory a block may take without opting in.
const SHARED_BYTES: usize = 48 * 1024;

/// The launch of the split decode attention (attn_split): the cache cut into `chunks`, each at most
/// `chunk_max` positions long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) struct SplitGrid {
    pub chunks: usize,
    pub chunk_max: usize,
    /// q (G·d floats), the position groups' weighted sums (8 · SPLIT_THREADS · G) and the scores
    /// (G · chunk_max), where G = heads / kv_heads.
    pub shared_bytes: usize,
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
impl AttnDecode {
    /// The split attention's grid for `b` sequences on `sms` SMs: about two blocks an SM, each chunk
    /// short enough that its scores fit in shared memory. `None` for more than eight query heads a
    /// kv head, when not even one position a chunk fits (a head too large), or for an empty cache.
    pub(crate) fn split_grid(&self, b: usize, sms: usize) -> Option<SplitGrid> {
        if self.kv_heads == 0 || self.cap == 0 || b == 0 || self.heads / self.kv_heads > MAX_GROUP {
            return None;
        }
        let g = self.heads / self.kv_heads;
        let fixed = (g * self.d + 8 * SPLIT_THREADS * g) * 4;
        let per_pos = g * 4;
        let chunk_limit = SHARED_BYTES.checked_sub(fixed)?.checked_div(per_pos)?;
        if chunk_limit == 0 {
            return None;
        }
        let chunks = (2 * sms).div_ceil(b * self.kv_heads).max(self.cap.div_ceil(chunk_limit)).min(self.cap);
        let chunk_max = self.cap.div_ceil(chunks);
        Some(SplitGrid { chunks, chunk_max, shared_bytes: fixed + per_pos * chunk_max })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every grid covers the cache, stays within the shared memory and spreads over the SMs.
    #[test]
    fn split_grids_cover_the_cache_within_shared_memory() {
        // (heads, kv_heads, d): SmolLM2, Llama 3.2 3B, 3.1 8B, Qwen2.5 7B, multi-head, an 8-group 256
        for (heads, kv_heads, d) in [(9, 3, 64), (24, 8, 128), (32, 8, 128), (28, 4, 128), (16, 16, 128), (64, 8, 256)]
        {
            for cap in [1, 2, 255, 256, 1024, 8192, 131072] {
                for b in [1, 2, 7] {
                    let op = AttnDecode { heads, kv_heads, cap, d, scale: 1.0 };
                    let g = op.split_grid(b, 132).expect("a grid");
                    assert!(g.chunks * g.chunk_max >= cap, "{op:?}: {g:?} leaves positions out");
                    assert!(g.chunks <= cap && g.shared_bytes <= SHARED_BYTES, "{op:?}: {g:?}");
                    assert!(g.chunks >= (264usize).div_ceil(b * kv_heads).min(cap), "{op:?}: {g:?} too few blocks");
                }
            }
        }
        let too_wide = AttnDecode { heads: 64, kv_heads: 4, cap: 1024, d: 256, scale: 1.0 };
        assert_eq!(too_wide.split_grid(1, 132), None, "16 heads of 256 a group do not fit");
        let nine = AttnDecode { heads: 72, kv_heads: 8, cap: 1024, d: 64, scale: 1.0 };
        assert_eq!(nine.split_grid(1, 132), None, "a block serves at most eight query heads");
        let empty = AttnDecode { heads: 8, kv_heads: 8, cap: 0, d: 64, scale: 1.0 };
        assert_eq!(empty.split_grid(1, 132), None);
    }
}
