//! Plain parameters shared by the candle ops (`op.rs`, `attention.rs`) and the CUDA launchers
//! (`cuda/`), so that the launchers depend on no op module.

/// How a linear's weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Dense,
    Int8,
    Nf4,
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
