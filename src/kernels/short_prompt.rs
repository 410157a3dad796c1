//! How a short prompt multiplies an int8 or NF4 weight on the GPU. The prefill way (dequantize the
//! whole weight to 16 bits, then cuBLAS) moves about 5 bytes a weight whatever the prompt's length;
//! the decode GEMVs move the stored 1 or ½ byte for every 8 rows of xs. So up to some tens of rows
//! the prompt goes through the GEMVs, 8 rows a launch (`MINILAB_GEMV_PROMPT`; the crossover was
//! measured per shape by `device_check cuda gemv-rows`, BENCHMARKS.md, issue 11 session 13).

use super::cpu::GEMV_MAX_ROWS;
use super::params::Format;
use crate::switch::Choice;

/// The words `MINILAB_GEMV_PROMPT` takes: `auto` (the default: [`auto_rows`]), `off` (every prompt
/// the prefill way), or the most rows that go through the GEMVs.
pub const WORDS: &[&str] = &["auto", "off", "16", "32", "64", "128"];
static WAY: Choice = Choice::new("MINILAB_GEMV_PROMPT", WORDS);

/// The most rows of xs that go through the GEMVs by default.
fn auto_rows(format: Format) -> usize {
    match format {
        // measured slower than the prefill way beyond 9 rows (BENCHMARKS.md, session 13): off
        Format::Int8 | Format::Nf4 | Format::Dense => 0,
    }
}

/// Picks `word` (one of [`WORDS`]) for the rest of the process, whatever the variable says; false
/// (and no change) for any other word.
pub fn set(word: &str) -> bool {
    WORDS.iter().position(|w| *w == word).map(|i| WAY.set(i)).is_some()
}

/// Whether `rows` rows of xs multiply a `format` weight through the GEMVs, 8 rows a launch.
pub(crate) fn takes(format: Format, rows: usize) -> bool {
    let most = match WORDS[WAY.get()] {
        "auto" => auto_rows(format),
        word => word.parse().unwrap_or(0),
    };
    format != Format::Dense && rows > GEMV_MAX_ROWS && rows <= most
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_set_the_limit_and_others_change_nothing() {
        assert!(set("64"));
        assert!(takes(Format::Int8, 64) && takes(Format::Nf4, 9) && !takes(Format::Int8, 65));
        assert!(!takes(Format::Int8, 8), "the GEMVs take 8 rows anyway");
        assert!(!takes(Format::Dense, 16), "a 16-bit weight needs no dequantizing");
        assert!(!set("65") && !set(""));
        assert!(takes(Format::Nf4, 64), "a refused word leaves the limit");
        assert!(set("off"));
        assert!(!takes(Format::Int8, 9));
        assert!(set("auto"));
        assert_eq!(takes(Format::Int8, 32), auto_rows(Format::Int8) >= 32);
    }
}
