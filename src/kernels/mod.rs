//! Fused linear-layer kernels: `y = x·Wᵀ` computed from the stored format (f16, int8, nf4) without
//! materializing a dequantized weight for decode. `cpu` holds the SIMD kernels, `op` hooks them into
//! candle as custom ops; [`crate::quant::SwitchableLinear`] calls them and falls back to
//! dequantize-then-matmul where none applies.

pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
pub mod decode;
pub mod flash;
mod fold;
pub mod grid;
mod many;
mod op;
mod params;
pub mod prefetch;
mod prefill;
pub mod prefill_ops;
pub mod qgemm;
pub mod softmax;
pub mod staging;

pub use decode::MAX_CONTEXT;
pub use fold::{
    fold_norms, linear_residual, linear_residual_stats, norm_fold, set_norm_fold, NormFold, NormRef, NormStats,
};
pub use many::{
    fuses_groups, linear_many, linear_qkv_rope, linear_silu_mul, set_fuse_mixed, set_fuse_rope, RopeKvRefs, WeightRef,
};
pub use op::{dense, enabled, int8, nf4, set_enabled};

/// The device address and byte length of a contiguous tensor on the GPU.
#[cfg(feature = "cuda")]
fn cuda_range(t: &candle_core::Tensor) -> candle_core::Result<(u64, u64)> {
    cuda::device_range(t)
}

#[cfg(not(feature = "cuda"))]
fn cuda_range(_: &candle_core::Tensor) -> candle_core::Result<(u64, u64)> {
    candle_core::bail!("built without CUDA")
}
