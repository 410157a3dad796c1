//! The small ops of a prompt's forward, fused on the GPU (on unless `MINILAB_FUSE_PREFILL=0`; 3B
//! pp512 1.18–1.22× and 8B 1.12–1.20× the plain path on an H100, BENCHMARKS.md issue 11 session 11):
//! RoPE, the layout by head and the KV cache writes in one pass
//! ([`super::decode::rope_kv`] over the whole prompt), the attention's output laid out by token in
//! one 16-byte-vector copy ([`heads_to_rows`]), the residual add with the next norm
//! ([`super::decode::add_rms_norm`]) and silu·up ([`super::decode::silu_mul`]); with [`wide`] these,
//! RoPE and the attention's causal softmax with 16-byte accesses over a prompt's rows. With the switch on
//! and off the GPU, the same wiring runs on candle's ops: the reference it is checked against.

use crate::switch::Switch;
use candle_core::{Result, Tensor};

static FUSE_PREFILL: Switch = Switch::new("MINILAB_FUSE_PREFILL", &["0"]);

/// Whether a prompt's forward takes the fused wiring (unless `MINILAB_FUSE_PREFILL=0`).
pub fn enabled() -> bool {
    FUSE_PREFILL.get()
}

/// Turns the fused prefill on or off for the rest of the process, whatever the variable says.
pub fn set_enabled(on: bool) {
    FUSE_PREFILL.set(on);
}

static WIDE_OPS: Switch = Switch::new("MINILAB_WIDE_OPS", &["0"]);

/// Whether a prompt's residual add + norm, silu·up, RoPE with the cache writes and causal softmax
/// take their kernels of 16-byte accesses where the shapes allow (unless `MINILAB_WIDE_OPS=0`): at
/// the 3B's pp512 the kernels of 2-byte accesses ran at a third of the bandwidth and took a third of
/// the prompt's kernel time (ncu, H100, BENCHMARKS.md issue 11 session 19); with these the 3B's pp512
/// ran 1.11–1.17× faster (session 21). A decode step's one row keeps its own kernels.
pub fn wide() -> bool {
    WIDE_OPS.get()
}

/// Turns the wide kernels on or off for the rest of the process, whatever the variable says.
pub fn set_wide(on: bool) {
    WIDE_OPS.set(on);
}

static SOFTMAX_REGS: Switch = Switch::new("MINILAB_SOFTMAX_REGS", &["0"]);

/// Whether a prompt's causal softmax holds each row in registers where it fits (at most 2048
/// elements of 16 bits, 1024 of f32, with [`wide`] on; unless `MINILAB_SOFTMAX_REGS=0`): one read
/// of the row and one exp an element, where the wide kernel reads a row three times and takes each
/// exp twice. Its outputs equal the wide kernel's bit for bit (checked on an H200, BENCHMARKS.md
/// issue 11 session 22): the op alone 1.48× faster at the 3B's pp512 shape, whole prompts pp512
/// 1.017× (f16, int8) and 1.006× (nf4), medians of three alternating rounds.
pub fn softmax_regs() -> bool {
    SOFTMAX_REGS.get()
}

/// Turns the register-held softmax on or off for the rest of the process, whatever the variable says.
pub fn set_softmax_regs(on: bool) {
    SOFTMAX_REGS.set(on);
}

/// `ys` `[b, heads, t, d]` → `[b, t, heads·d]`.
pub fn heads_to_rows(ys: &Tensor) -> Result<Tensor> {
    let (b, heads, t, d) = ys.dims4()?;
    #[cfg(feature = "cuda")]
    if ys.device().is_cuda() && super::op::enabled() {
        if let Some(out) = super::cuda::prefill::heads_to_rows(ys)? {
            return Ok(out);
        }
    }
    ys.transpose(1, 2)?.reshape((b, t, heads * d))
}
