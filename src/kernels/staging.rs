//! Staged one-row GEMVs (opt-in, `MINILAB_GEMV_STAGED=1`).
//!
//! The SASS of the decode GEMVs (`bench/kernels/sass.sh`) shows ptxas issuing only half of an NF4
//! loop iteration's weight loads, and none of its absmax loads, before the products begin, at every
//! register cap tried: each iteration then waits on DRAM round trips in turn. The `gemv_st_` kernels
//! (gemv_staged.cuh's `accumulate_staged`) copy the next steps of a warp's rows into shared memory with
//! `cp.async` while they multiply the current ones, so the copies cannot be put off. Their arithmetic
//! is the plain kernels', step for step: the outputs are equal bit for bit.
//!
//! Taken by one-row launches of 16-bit activations (a decode step), and only where a normalized xs
//! fits beside the stages. On the H200 (issue 11 session 9, `device_check cuda staged` and
//! `gemv_bench --staged`) the logits are equal bit for bit, but the step is slower in every format
//! (3B tg128 0.76–0.90×): the NF4 step is held by its launches' memory pattern, not by the loop's
//! waits. Kept opt-in, for the record.

use crate::switch::Switch;

static STAGED: Switch = Switch::opt_in("MINILAB_GEMV_STAGED", &["1"]);

/// Whether one-row 16-bit GEMV launches take the staged kernels.
pub fn staged() -> bool {
    STAGED.get()
}

/// Turns the staged kernels on or off for the rest of the process, whatever the variable says.
pub fn set_staged(on: bool) {
    STAGED.set(on);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_overrides_the_default() {
        set_staged(true);
        assert!(staged());
        set_staged(false);
        assert!(!staged());
    }
}
