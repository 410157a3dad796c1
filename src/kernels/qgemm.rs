//! How a prompt multiplies an int8 or NF4 weight on the GPU. The shipped way dequantizes the whole
//! weight to 16 bits in HBM, then calls cuBLAS ([`super::prefill`]); `MINILAB_QGEMM` picks instead
//! the GEMM that dequantizes tile by tile in shared memory and multiplies on the tensor cores
//! (`cuda/qgemm.cuh`), so the weight crosses HBM once, as stored. It stays opt-in: correct on an
//! H100, but 0.25–0.58× the shipped way at 512 rows (`device_check cuda qgemm`, BENCHMARKS.md, issue
//! 11 session 13), held by `mma.sync` issue and its barriers, not by memory. In a build with the
//! `cutlass` feature, CUTLASS's wgmma GEMM (`cuda/cutlass.rs`) takes a prompt's int8 products by
//! default (`auto`; on an H100 the 3B's / 8B's int8 prompts ran 1.17× / 1.32× the shipped way's
//! speed at 512 tokens, 1.35× / 1.68× at 128, 1.02× / 1.03× at 2048; issue 11 session 16), and with
//! `MINILAB_QGEMM=cutlass` NF4's too (slower than the shipped way: its exact codebook conversion
//! costs more than the dequantize pass saves).

use crate::switch::Choice;

/// Rows of xs (tokens) a block of the GEMM computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tile {
    /// 128 where that fills the GPU twice over, else 64 ([`tile_rows`]).
    Auto,
    Rows64,
    Rows128,
}

/// The GEMM a prompt's int8/NF4 products take instead of dequantize + cuBLAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The default: CUTLASS's GEMM for int8 in a build with the `cutlass` feature (bf16 on Hopper),
    /// else the shipped way; NF4 the shipped way.
    Auto,
    /// minilab's own (`cuda/qgemm.cuh`), at that tile.
    Own(Tile),
    /// CUTLASS's sm90 mixed-input GEMM (the `cutlass` feature, `cuda/cutlass/`): bf16 models on
    /// Hopper; elsewhere the shipped way runs.
    Cutlass,
}

/// The words `MINILAB_QGEMM` takes (start-up checks against these): `auto` (the default, [`Way::Auto`]),
/// `off` (dequantize, then cuBLAS), `on` (minilab's GEMM, tile picked by shape), `64` or `128`
/// (minilab's GEMM, that tile), and in a build with the `cutlass` feature `cutlass` (CUTLASS's GEMM
/// for int8 and NF4).
#[cfg(not(feature = "cutlass"))]
pub const WORDS: &[&str] = &["auto", "off", "on", "64", "128"];
#[cfg(feature = "cutlass")]
pub const WORDS: &[&str] = &["auto", "off", "on", "64", "128", "cutlass"];
const WAYS: [Option<Way>; 6] = [
    Some(Way::Auto),
    None,
    Some(Way::Own(Tile::Auto)),
    Some(Way::Own(Tile::Rows64)),
    Some(Way::Own(Tile::Rows128)),
    Some(Way::Cutlass),
];
static WAY: Choice = Choice::new("MINILAB_QGEMM", WORDS);

/// The way in force: `None` for dequantize + cuBLAS.
pub fn current() -> Option<Way> {
    WAYS[WAY.get()]
}

/// The word of `MINILAB_QGEMM` that picks `way` (`None`: `off`); `?` for `Way::Cutlass` in a build
/// without the feature.
pub fn word(way: Option<Way>) -> &'static str {
    WAYS[..WORDS.len()].iter().position(|w| *w == way).map_or("?", |i| WORDS[i])
}

/// Sets the way for the rest of the process, whatever the variable says (`Way::Cutlass` only in a
/// build with the `cutlass` feature; elsewhere it sets the default, `Way::Auto`).
pub fn set(way: Option<Way>) {
    WAY.set(WAYS[..WORDS.len()].iter().position(|w| *w == way).unwrap_or(0));
}

/// Weight rows a block computes (the kernel's BN).
pub const BLOCK_N: usize = 128;

/// Whether the GEMM takes an `[n, k]` weight: whole 128-row blocks and whole 64-element NF4 blocks.
pub fn fits(n: usize, k: usize) -> bool {
    n > 0 && k > 0 && n.is_multiple_of(BLOCK_N) && k.is_multiple_of(64)
}

/// Rows of xs a block takes for `m` rows and `n` weight rows on a GPU of `sms` SMs: 128-row tiles
/// halve the xs traffic a weight tile costs, but only pay where they still give every SM two blocks
/// (the kernel runs two a SM); otherwise 64.
pub fn tile_rows(tile: Tile, m: usize, n: usize, sms: usize) -> usize {
    match tile {
        Tile::Rows64 => 64,
        Tile::Rows128 => 128,
        Tile::Auto if m.div_ceil(128) * (n / BLOCK_N) >= 2 * sms => 128,
        Tile::Auto => 64,
    }
}

/// CUTLASS's tiles (weight rows × xs rows a block; `cuda/cutlass/gemms.cuh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutlassTile {
    /// cooperative 128 × 128: two consumer warpgroups on one tile
    Coop,
    /// cooperative 128 × 256
    Wide,
    /// ping-pong 64 × 128: two consumer warpgroups on a tile each
    Ping,
}

impl CutlassTile {
    /// The kernel's name suffix and params.cu's tile number.
    pub fn name_and_index(self) -> (&'static str, i32) {
        match self {
            CutlassTile::Coop => ("coop", 0),
            CutlassTile::Wide => ("wide", 1),
            CutlassTile::Ping => ("ping", 2),
        }
    }
}

/// The CUTLASS tile for `m` rows of xs and `n` weight rows on `sms` SMs: the widest whose tiles still
/// give 60 % of the SMs one, and fewer of them than the next narrower (at 128 rows or fewer, a 256-row
/// tile is half padding). A wider tile reads each weight tile for more rows, but where its tiles
/// leave SMs idle the narrower one wins (`mixed_bench`, H100, issue 11 sessions 15–16: this rule
/// picks the fastest of the three at each of the 30 measured shapes and row counts, `tests` below;
/// the stacked q/k/v of the 3B at 512 rows, 80 wide tiles on 132 SMs, took 34 µs wide and 49 coop).
pub fn cutlass_tile(m: usize, n: usize, sms: usize) -> CutlassTile {
    let tiles = |rows: usize, cols: usize| n.div_ceil(rows) * m.div_ceil(cols);
    let enough = |t: usize| 10 * t >= 6 * sms;
    let (wide, coop) = (tiles(128, 256), tiles(128, 128));
    if enough(wide) && wide < coop {
        CutlassTile::Wide
    } else if enough(coop) {
        CutlassTile::Coop
    } else {
        CutlassTile::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_fills_the_gpu_before_it_grows() {
        // the 3B's pp512 on 132 SMs: 4 · 24 = 96 blocks of 128 would leave SMs idle
        assert_eq!(tile_rows(Tile::Auto, 512, 3072, 132), 64);
        // an 8B FFN at 2048 tokens: 16 · 112 blocks
        assert_eq!(tile_rows(Tile::Auto, 2048, 14336, 132), 128);
        assert_eq!(tile_rows(Tile::Auto, 9, 128, 132), 64);
        assert_eq!(tile_rows(Tile::Rows128, 9, 128, 132), 128);
        assert_eq!(tile_rows(Tile::Rows64, 4096, 14336, 132), 64);
    }

    #[test]
    fn the_cutlass_tile_is_the_fastest_measured() {
        use CutlassTile::*;
        // (n, m, the fastest of the three in mixed_bench on an H100, 132 SMs, for every k measured:
        // 3072 × 3072 and 3072 × 8192 share n; int8 and NF4 agree)
        let fastest = [
            (3072, 512, Coop),
            (1024, 512, Ping),
            (8192, 512, Wide),
            (14336, 512, Wide),
            (4096, 512, Coop),
            (3072, 128, Ping),
            (1024, 128, Ping),
            (8192, 128, Ping),
            (14336, 128, Coop),
            (4096, 128, Ping),
            (3072, 2048, Wide),
            (1024, 2048, Coop),
            (8192, 2048, Wide),
            (14336, 2048, Wide),
            (4096, 2048, Wide),
            // session 16, `mixed_bench --fused`: stacked q/k/v and gate/up of the 3B and 8B
            (5120, 512, Wide),
            (6144, 512, Wide),
            (16384, 512, Wide),
            (28672, 512, Wide),
            (5120, 128, Ping),
            (6144, 128, Ping),
            (16384, 128, Coop),
            (28672, 128, Coop),
            (5120, 2048, Wide),
            (6144, 2048, Wide),
            (16384, 2048, Wide),
            (28672, 2048, Wide),
        ];
        for (n, m, tile) in fastest {
            assert_eq!(cutlass_tile(m, n, 132), tile, "{n} weight rows, {m} rows of xs");
        }
    }

    #[test]
    fn only_whole_blocks_fit() {
        assert!(fits(3072, 8192) && fits(128256, 3072) && fits(128, 64));
        assert!(!fits(1000, 4096) && !fits(3072, 96) && !fits(0, 64) && !fits(128, 0));
    }

    #[test]
    fn set_picks_a_way_and_off_is_none() {
        set(Some(Way::Own(Tile::Rows128)));
        assert_eq!(current(), Some(Way::Own(Tile::Rows128)));
        set(Some(Way::Cutlass));
        let cutlass = if cfg!(feature = "cutlass") { Way::Cutlass } else { Way::Auto };
        assert_eq!(current(), Some(cutlass));
        set(None);
        assert_eq!(current(), None);
        set(Some(Way::Auto));
        assert_eq!(current(), Some(Way::Auto));
        assert_eq!((word(None), word(Some(Way::Auto)), word(Some(Way::Own(Tile::Auto)))), ("off", "auto", "on"));
        assert_eq!(word(Some(Way::Cutlass)), if cfg!(feature = "cutlass") { "cutlass" } else { "?" });
    }

    #[test]
    fn every_word_has_a_way() {
        assert!(WORDS.len() <= WAYS.len());
        assert_eq!((WORDS[0], WAYS[0]), ("auto", Some(Way::Auto)), "the default comes first");
        assert_eq!(WORDS.contains(&"cutlass"), cfg!(feature = "cutlass"));
    }
}
