//! A seeded synthetic token stream, the text of `synthetic:` models: it lets eval and the
//! sensitivity scan run at real scale for timing, and means nothing as language.

use std::path::Path;

/// The `--text` / `--calib` value that selects the synthetic stream.
pub const NAME: &str = "synthetic";

/// The line every output of a synthetic run carries.
pub const WARNING: &str = "synthetic weights: timings only, accuracy is meaningless";

/// Whether a text path names the synthetic stream.
pub fn is_synthetic(path: &Path) -> bool {
    path.as_os_str() == NAME
}

/// `n` token ids drawn uniformly from `0..vocab` by a splitmix64 stream from `seed`.
pub fn tokens(vocab: usize, n: usize, seed: u64) -> Vec<u32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % vocab.max(1) as u64) as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_seeded_and_in_range() {
        let a = tokens(1000, 5000, 7);
        assert_eq!(a, tokens(1000, 5000, 7));
        assert_ne!(a, tokens(1000, 5000, 8));
        assert!(a.iter().all(|&t| t < 1000));
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 900, "covers the vocabulary: {}", distinct.len());
        assert!(is_synthetic(Path::new("synthetic")) && !is_synthetic(Path::new("synthetic.txt")));
    }
}
