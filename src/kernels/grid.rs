//! The grids of the GEMV launches (opt-in `MINILAB_GEMV_GRID=resident|stream|stream-regs`).
//!
//! By default a GEMV launch has a warp for each group of rows: the warp takes its group and exits,
//! and every block first fills its NF4 table (and, with a folded norm, normalizes xs). An NF4 row of
//! a 3B model is 1.5 KB, so a warp's work is one or two rounds of loads, and on the H200 even the
//! 197 MB NF4 head streams at only 58 % of the copy bandwidth with every load in flight (BENCHMARKS.md,
//! issue 11 session 9).
//!
//! - `resident`: a launch has at most as many blocks as the GPU holds at once (the kernel's occupancy
//!   times the SMs), and their warps stride over the groups (gemv.cuh's `gemv_parts` allows a grid
//!   smaller than the groups): each block pays its prologue once and its warps live for the whole
//!   launch. The kernels are the shipped ones.
//! - `stream`: the one-row launches of 16-bit activations take the `gemv_sm_` kernels
//!   (gemv_stream.cuh) on a resident grid: each warp takes a run of whole row groups and keeps 4 KB of
//!   weights in flight through `cp.async` across the groups' boundaries, and issues its first copies
//!   before it waits on the previous kernel (which pays with `MINILAB_PDL=1`). Launches it cannot take
//!   ([`streams`]) keep the shipped kernels.
//! - `stream-regs`: the same walk with the steps in flight held in registers (the `gemv_sr_` kernels,
//!   loads past L1 in a loop unrolled by the slots) instead of shared memory: each weight byte then
//!   passes through no shared memory, about 1.25 fewer L1/shared bytes a weight (the NF4 kernels'
//!   static MIO ceilings 77 % and 85 % against 61 % and 68 %), for 96–128 registers a thread.
//!
//! A row's arithmetic is the same every way, so the outputs are equal bit for bit.
//!
//! Measured on an H100 (BENCHMARKS.md, issue 11 session 11): every way's outputs equal the shipped
//! ones bit for bit, and none is faster. The 1B's decode step took 1.00×, 1.06–1.23× and 1.04–1.17×
//! the time of `rows`; in `gemv_bench --stream` only stream-regs under `MINILAB_PDL=1` matched the
//! shipped step (3B NF4 1.03× faster, int8 0.92×). `gemv_bench --merged` puts the limit elsewhere: a
//! step's linears as one launch are 1.35× (int8) to 1.75× (NF4) faster than the shipped launches, so
//! the launch boundaries, not the warps' memory pattern, hold the quantized steps. They stay opt-in.

use crate::switch::Choice;

/// How a GEMV launch lays out its grid (ordered: each way caps the grid at least as much as the one
/// before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grid {
    /// A warp for each group of rows (the default).
    Rows,
    /// At most the blocks the GPU holds at once, warps striding over the groups.
    Resident,
    /// The streaming one-row kernels on a resident grid, where [`streams`] holds.
    Stream,
    /// The same with the steps in flight in registers.
    StreamRegs,
}

/// The grids in [`WORDS`]' order.
const GRIDS: [Grid; 4] = [Grid::Rows, Grid::Resident, Grid::Stream, Grid::StreamRegs];
/// The words `MINILAB_GEMV_GRID` takes, one a way (start-up checks against these).
pub const WORDS: &[&str] = &["rows", "resident", "stream", "stream-regs"];
static GRID: Choice = Choice::new("MINILAB_GEMV_GRID", WORDS);

/// The grid in force: [`set`]'s, else `MINILAB_GEMV_GRID` (`resident`, `stream`, `stream-regs`;
/// anything else is rows, and the binary refuses other values than `rows` at start-up).
pub fn current() -> Grid {
    GRIDS[GRID.get()]
}

/// Sets the grid for the rest of the process, whatever the variable says.
pub fn set(g: Grid) {
    GRID.set(g as usize);
}

/// Whether GEMV launches are capped at the blocks the GPU holds at once (every opt-in is).
pub fn resident() -> bool {
    current() != Grid::Rows
}

/// Bytes of one row's step for one warp: 16 a lane.
const STEP_BYTES: usize = 512;
/// The most bytes of normalized xs a streaming block brings beside its 24 KB of table and slots (48 KB
/// in all without opting in; the register kernels' 4 KB leave more, but one rule serves both).
pub const STREAM_NORM_MAX: usize = 16 << 10;

/// Whether a GEMV launch can take a streaming kernel: one row of 16-bit xs (`xs_bytes` 2), rows of
/// whole 512-byte steps (`weight_bits` 16, 8 or 4 a weight: k a multiple of 256, 512 or 1024), and a
/// normalized xs (`norm`) that fits beside the slots.
pub fn streams(m: usize, xs_bytes: usize, weight_bits: usize, k: usize, norm: bool) -> bool {
    let step_elems = STEP_BYTES * 8 / weight_bits.max(1);
    m == 1
        && xs_bytes == 2
        && matches!(weight_bits, 4 | 8 | 16)
        && k > 0
        && k.is_multiple_of(step_elems)
        && (!norm || k * xs_bytes <= STREAM_NORM_MAX)
}

/// The kernel family (the name's prefix) a GEMV launch takes, and its grid: a launch that asks L2
/// for the next weights (`prefetch`, gemv_pf_) or stages its own (`staged`, gemv_st_) keeps that
/// kernel, start-up allowing only one of them beside a stream; else the streaming kernels where the
/// launch [`streams`]; else the shipped ones. Every opt-in grid caps the others at the resident
/// blocks, since all of them stride their warps over the row groups.
pub fn pick(grid: Grid, prefetch: bool, staged: bool, streams: bool) -> (&'static str, Grid) {
    let capped = grid.min(Grid::Resident);
    match (prefetch, staged, streams, grid) {
        (true, ..) => ("gemv_pf_", capped),
        (_, true, ..) => ("gemv_st_", capped),
        (_, _, true, Grid::Stream) => ("gemv_sm_", grid),
        (_, _, true, Grid::StreamRegs) => ("gemv_sr_", grid),
        _ => ("gemv_", capped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_wins_and_resident_covers_every_opt_in() {
        set(Grid::StreamRegs);
        assert_eq!(current(), Grid::StreamRegs);
        assert!(resident());
        set(Grid::Stream);
        assert_eq!(current(), Grid::Stream);
        assert!(resident());
        set(Grid::Resident);
        assert!(resident());
        set(Grid::Rows);
        assert!(!resident());
    }

    #[test]
    fn each_launch_picks_one_kernel_family_and_its_grid() {
        use Grid::*;
        // the default: the shipped kernels, a warp a group, whatever the launch could take
        for streams in [false, true] {
            assert_eq!(pick(Rows, false, false, streams), ("gemv_", Rows));
        }
        assert_eq!(pick(Rows, true, false, true), ("gemv_pf_", Rows));
        assert_eq!(pick(Rows, false, true, true), ("gemv_st_", Rows));
        // a resident grid keeps each kernel, capped
        assert_eq!(pick(Resident, false, false, true), ("gemv_", Resident));
        assert_eq!(pick(Resident, true, false, false), ("gemv_pf_", Resident));
        // the streams where the launch streams, else the shipped kernels on a resident grid
        assert_eq!(pick(Stream, false, false, true), ("gemv_sm_", Stream));
        assert_eq!(pick(StreamRegs, false, false, true), ("gemv_sr_", StreamRegs));
        assert_eq!(pick(Stream, false, false, false), ("gemv_", Resident));
        assert_eq!(pick(StreamRegs, false, false, false), ("gemv_", Resident));
        // prefetching or staging set by hand (device_check) beside a stream wins, resident
        assert_eq!(pick(Stream, true, false, true), ("gemv_pf_", Resident));
        assert_eq!(pick(StreamRegs, false, true, true), ("gemv_st_", Resident));
    }

    #[test]
    fn streaming_takes_one_row_of_16_bit_xs_and_whole_steps() {
        // every Llama shape: k = 2048, 3072, 4096, 8192, 14336 in each format
        for k in [2048, 3072, 4096, 8192, 14336] {
            for bits in [4, 8, 16] {
                assert!(streams(1, 2, bits, k, false), "k {k}, {bits} bits");
            }
        }
        // a step of NF4 is 1024 weights, of int8 512, of bf16 256
        assert!(!streams(1, 2, 4, 1536, false));
        assert!(streams(1, 2, 8, 1536, false));
        assert!(!streams(1, 2, 8, 768, false));
        assert!(streams(1, 2, 16, 768, false));
        assert!(!streams(1, 2, 16, 200, false));
        // more rows, f32 xs, other widths, no k
        assert!(!streams(2, 2, 4, 4096, false));
        assert!(!streams(1, 4, 4, 4096, false));
        assert!(!streams(1, 2, 32, 4096, false));
        assert!(!streams(1, 2, 0, 4096, false));
        assert!(!streams(1, 2, 4, 0, false));
        // a folded norm brings k · 2 bytes
        assert!(streams(1, 2, 4, 8192, true));
        assert!(!streams(1, 2, 4, 9216, true));
    }
}
