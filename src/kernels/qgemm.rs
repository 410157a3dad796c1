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
    /// cooperative 128 × 192
    Coop192,
    /// cooperative 128 × 112
    Coop112,
}

impl CutlassTile {
    /// The kernel's name suffix and params.cu's tile number.
    pub fn name_and_index(self) -> (&'static str, i32) {
        match self {
            CutlassTile::Coop => ("coop", 0),
            CutlassTile::Wide => ("wide", 1),
            CutlassTile::Ping => ("ping", 2),
            CutlassTile::Coop192 => ("c192", 3),
            CutlassTile::Coop112 => ("c112", 4),
        }
    }

    /// Rows of xs a tile takes, for the cooperative 128-row tiles (`None` for ping-pong).
    fn xs_rows(self) -> Option<usize> {
        match self {
            CutlassTile::Coop => Some(128),
            CutlassTile::Wide => Some(256),
            CutlassTile::Coop192 => Some(192),
            CutlassTile::Coop112 => Some(112),
            CutlassTile::Ping => None,
        }
    }
}

/// `MINILAB_CUTLASS_TILES`: `measured` (the default) keeps the three tiles measured on every shape;
/// `one-wave` lets [`one_wave`] replace them where its model says so. Opt-in until it has run on a
/// GPU (issue 11, session 18).
static TILES: crate::switch::Choice = crate::switch::Choice::new("MINILAB_CUTLASS_TILES", TILE_WORDS);

/// What `MINILAB_CUTLASS_TILES` takes, the default first.
pub const TILE_WORDS: &[&str] = &["measured", "one-wave"];

/// Lets [`one_wave`] replace the measured tile (`true`) or not (`false`, the default), for the rest
/// of the process, whatever `MINILAB_CUTLASS_TILES` says.
pub fn set_one_wave(on: bool) {
    TILES.set(usize::from(on));
}

/// The CUTLASS tile for `m` rows of xs and `n` weight rows on `sms` SMs, as `MINILAB_CUTLASS_TILES`
/// says ([`tile_for`]).
pub fn cutlass_tile(m: usize, n: usize, sms: usize) -> CutlassTile {
    tile_for(m, n, sms, TILES.get() == 1)
}

/// [`measured_tile`], then with `one_wave_on` [`one_wave`] where that finishes sooner.
pub fn tile_for(m: usize, n: usize, sms: usize, one_wave_on: bool) -> CutlassTile {
    let base = measured_tile(m, n, sms);
    if one_wave_on {
        one_wave(m, n, sms, base).unwrap_or(base)
    } else {
        base
    }
}

/// Among the three tiles measured on every shape: the widest whose tiles still give 60 % of the SMs
/// one, and fewer of them than the next narrower (at 128 rows or fewer, a 256-row tile is half
/// padding). A wider tile reads each weight tile for more rows, but where its tiles leave SMs idle the
/// narrower one wins (`mixed_bench`, H100, issue 11 sessions 15–16: this rule picks the fastest of the
/// three at each of the 30 measured shapes and row counts, `tests` below; the stacked q/k/v of the 3B
/// at 512 rows, 80 wide tiles on 132 SMs, took 34 µs wide and 49 coop).
pub fn measured_tile(m: usize, n: usize, sms: usize) -> CutlassTile {
    let tiles = |rows: usize, cols: usize| tile_count(m, n, rows, cols);
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

/// Tiles of `weight_rows` × `xs_rows` that cover `n` weight rows and `m` rows of xs.
fn tile_count(m: usize, n: usize, weight_rows: usize, xs_rows: usize) -> usize {
    n.div_ceil(weight_rows) * m.div_ceil(xs_rows)
}

/// A cooperative tile's fixed cost a k step, in rows of xs' worth of MMA: the time of a 128 × N tile
/// goes as `TILE_FIXED_ROWS + N`. Fitted to session 16's per-SM rates (128 × 128: 4.3 TFLOP/s an SM,
/// 128 × 256: 5.3): the weight's conversion, paid once a tile whatever its width.
const TILE_FIXED_ROWS: usize = 78;

/// The 128 × 192 or 128 × 112 tile where `base` (cooperative) takes more rounds of tiles or leaves
/// SMs idle and the other fits every tile into one round that ends sooner, as `TILE_FIXED_ROWS`
/// models a tile's time: at 512 rows the 3B's stacked q/k/v (5120 rows) takes 80 wide tiles, 0.61 of
/// a round at 334 units, or 120 of 128 × 192 at 270; its o and down products (3072 rows) 96 tiles of
/// 128 × 128 at 206, or 120 of 128 × 112 at 190. Only one-round choices: at more rounds the measured
/// tiles beat this model (a persistent kernel overlaps a tile's end with the next one's start).
pub fn one_wave(m: usize, n: usize, sms: usize, base: CutlassTile) -> Option<CutlassTile> {
    let cost = |t: CutlassTile| {
        let rows = t.xs_rows()?;
        let rounds = tile_count(m, n, 128, rows).div_ceil(sms.max(1));
        Some((rounds, rounds * (TILE_FIXED_ROWS + rows)))
    };
    let (_, base_cost) = cost(base)?;
    [CutlassTile::Coop112, CutlassTile::Coop192]
        .into_iter()
        .filter_map(|t| cost(t).map(|(rounds, c)| (t, rounds, c)))
        .filter(|&(_, rounds, c)| rounds == 1 && c < base_cost)
        .min_by_key(|&(_, _, c)| c)
        .map(|(t, _, _)| t)
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
            assert_eq!(measured_tile(m, n, 132), tile, "{n} weight rows, {m} rows of xs");
        }
    }

    #[test]
    fn one_wave_tiles_take_only_the_products_that_fit_one_round() {
        use CutlassTile::*;
        // the 3B at 512 rows: stacked q/k/v in 120 tiles of 128 × 192; o and down in 120 of 128 × 112
        assert_eq!(tile_for(512, 5120, 132, true), Coop192);
        assert_eq!(tile_for(512, 3072, 132, true), Coop112);
        // gate/up (128 wide tiles, one full round), the 8B's shapes and every 2048-row product keep the
        // measured tile: no one-wave tile fits them
        for (n, m) in [(8192, 512), (6144, 512), (14336, 512), (4096, 512), (3072, 2048), (4096, 2048), (28672, 2048)] {
            assert_eq!(tile_for(m, n, 132, true), measured_tile(m, n, 132), "{n} weight rows, {m} rows of xs");
        }
        // one round of 128 × 128 tiles beats a round of wider ones
        assert_eq!(tile_for(2048, 1024, 132, true), Coop);
        // ping-pong is never replaced
        assert_eq!(tile_for(128, 3072, 132, true), Ping);
        assert_eq!(one_wave(128, 3072, 132, Ping), None);
        // a GPU of other size: the rule follows its SMs (78 SMs: 80 wide tiles for 5120 rows; 120 won't fit)
        assert_eq!(tile_for(512, 5120, 78, true), measured_tile(512, 5120, 78));
        assert_eq!(one_wave(512, 3072, 0, Coop), None);
        // off, the measured tile stands
        assert_eq!(tile_for(512, 5120, 132, false), Wide);
        assert_eq!(tile_for(512, 3072, 132, false), Coop);
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
