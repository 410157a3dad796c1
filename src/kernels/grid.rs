//! The grids of the GEMV launches (opt-in `MINILAB_GEMV_GRID=resident`).
//!
//! By default a GEMV launch has a warp for each group of rows: the warp takes its group and exits,
//! and every block first fills its NF4 table (and, with a folded norm, normalizes xs). An NF4 row of
//! a 3B model is 1.5 KB, so a warp's work is one or two rounds of loads, and on the H200 even the
//! 197 MB NF4 head streams at only 58 % of the copy bandwidth with every load in flight (BENCHMARKS.md,
//! issue 11 session 9). With `resident` a launch has at most as many blocks as the GPU holds at once
//! (the kernel's occupancy times the SMs), and their warps stride over the groups (gemv.cuh's
//! `gemv_parts` allows a grid smaller than the groups): each block pays its prologue once and its
//! warps stream for the whole launch. A row's arithmetic is the same either way, so the outputs are
//! equal bit for bit.
//!
//! Built without a GPU run: `gemv_bench --merged` times it per shape and per step against the shipped
//! grid, and `device_check cuda grid` compares the decode logits bit for bit and times the step.

use crate::switch::Switch;

static RESIDENT: Switch = Switch::opt_in("MINILAB_GEMV_GRID", &["resident"]);

/// Whether GEMV launches are capped at the blocks the GPU holds at once.
pub fn resident() -> bool {
    RESIDENT.get()
}

/// Turns resident grids on or off for the rest of the process, whatever the variable says.
pub fn set_resident(on: bool) {
    RESIDENT.set(on);
}
