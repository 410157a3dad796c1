//! A prompt's causal attention in one GPU kernel (flash attention, `cuda/flash.cu`): the scores and
//! probabilities stay on chip, and the masked half of q·kᵀ is never computed. Elsewhere, and where
//! its shapes do not fit, attention goes the unfused way (`q·kᵀ`, [`super::softmax::causal_softmax`],
//! `·v`), which is also the reference it is checked against (`device_check cuda flash`).

use crate::switch::Switch;
use candle_core::{Result, Tensor};

static FLASH: Switch = Switch::new("MINILAB_FLASH", &["0"]);
static THREE_BLOCKS: Switch = Switch::new("MINILAB_FLASH_B3", &["0"]);
static SPLIT: Switch = Switch::opt_in("MINILAB_FLASH_SPLIT", &["1"]);

/// Which build of the fused kernel runs (flash.cu's three entries a dtype and head dim): the
/// three-blocks-an-SM build by default, the compiler's own layout (two blocks an SM at d = 128 on
/// sm_90) with neither switch on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Build {
    /// Split-KV (`MINILAB_FLASH_SPLIT=1`, opt-in: correct but slower on an H100): where the
    /// prompt's blocks fit the GPU at once ([`split_min`]), the row blocks with the most key tiles
    /// have their tiles dealt between two blocks, which merge their halves through a scratch in L2.
    /// It takes precedence where it applies.
    pub split: bool,
    /// Three blocks an SM asked of the compiler (on unless `MINILAB_FLASH_B3=0`), where the split
    /// does not run.
    pub three_blocks: bool,
}

/// Whether a prompt's attention takes the fused kernel where it applies (unless `MINILAB_FLASH=0`;
/// on by default since it was checked and timed on an H100, BENCHMARKS.md issue 11 session 23).
pub fn enabled() -> bool {
    FLASH.get()
}

/// Turns the fused attention on or off for the rest of the process, whatever the variable says.
pub fn set_enabled(on: bool) {
    FLASH.set(on);
}

/// Whether the fused kernel runs as its three-blocks-an-SM build (unless `MINILAB_FLASH_B3=0`; at
/// most 168 registers, against 171 and two blocks an SM at d = 128 on sm_90): more warps resident
/// for a long prompt's key tiles. Its arithmetic is the same kernel's, bit for bit; on by default
/// since an H100 timed it 1.00–1.05× the other build's attention (BENCHMARKS.md, session 25).
pub fn three_blocks() -> bool {
    THREE_BLOCKS.get()
}

/// Picks the three-blocks-an-SM build (or not) for the rest of the process.
pub fn set_three_blocks(on: bool) {
    THREE_BLOCKS.set(on);
}

/// Whether a prompt's few row blocks have their longest key walks split between two blocks
/// (`MINILAB_FLASH_SPLIT=1`, [`Build::split`]). Opt-in: on an H100 its attention took 1.12–1.15×
/// the default's at pp512 (BENCHMARKS.md, session 25).
pub fn split() -> bool {
    SPLIT.get()
}

/// Picks the split-KV build (or not) for the rest of the process.
pub fn set_split(on: bool) {
    SPLIT.set(on);
}

/// The build the switches pick.
pub fn build() -> Build {
    Build { split: split(), three_blocks: three_blocks() }
}

/// flash.cu's keys a tile (BN).
const KEY_TILE: usize = 64;

/// The split-KV launch's `split_min` for `blocks` row blocks of a prompt whose last position is
/// `total − 1`, on a GPU of `sms` SMs: row blocks of at least that many key tiles split, so that none
/// walks more than half the longest walk. `None` where the launch does not split: past one wave at
/// two blocks an SM, the grid's waves keep the SMs busy and the scratch would grow with the prompt.
pub fn split_min(blocks: usize, sms: usize, total: usize) -> Option<usize> {
    (blocks <= 2 * sms).then(|| (total.div_ceil(KEY_TILE) / 2 + 1).max(2))
}

/// `softmax(scale·q·kᵀ + causal mask)·v`: q `[b, heads, t, d]` at positions `start..start + t`, k
/// and v `[b, kv_heads, cap, d]` buffers whose first `start + t` positions are filled → `[b, t,
/// heads·d]`. `None` where the fused kernel does not run (off, not on a GPU, or shapes and dtypes it
/// does not take: bf16/f16 with d 64 or 128 on sm_80 and later); the caller then takes the unfused way.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, start: usize, scale: f64) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if enabled() && q.device().is_cuda() && super::op::enabled() {
        return super::cuda::flash::causal_attention(q, k, v, start, scale as f32, build());
    }
    let _ = (q, k, v, start, scale);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// On the CPU the fused kernel never runs, switched on or not: attention stays with the unfused
    /// way, whose outputs the model's CPU tests check.
    #[test]
    fn off_the_gpu_attention_takes_the_unfused_way() -> Result<()> {
        let q = Tensor::zeros((1, 4, 3, 64), DType::BF16, &Device::Cpu)?;
        let kv = Tensor::zeros((1, 2, 8, 64), DType::BF16, &Device::Cpu)?;
        let was = enabled();
        for on in [false, true] {
            set_enabled(on);
            assert!(causal_attention(&q, &kv, &kv, 0, 0.125)?.is_none());
        }
        set_enabled(was);
        Ok(())
    }

    /// The 3B's pp512 on 132 SMs (192 row blocks, the longest walking 8 key tiles) splits the
    /// row blocks of 5 tiles and more, so none walks more than 4; the 8B's (256 blocks) too; 2048
    /// tokens (768 blocks) do not split; a short prompt after cached positions counts them; one
    /// tile never splits.
    #[test]
    fn split_min_halves_the_longest_walk_of_a_one_wave_prompt() {
        assert_eq!(split_min(192, 132, 512), Some(5));
        assert_eq!(split_min(256, 132, 512), Some(5));
        assert_eq!(split_min(265, 132, 512), None);
        assert_eq!(split_min(768, 132, 2048), None);
        assert_eq!(split_min(8, 132, 37 + 100), Some(2));
        assert_eq!(split_min(4, 132, 7), Some(2));
        assert_eq!(split_min(1, 1, 64 * 9), Some(5));
    }
}
