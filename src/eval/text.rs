//! Evaluation text: read, checked, tokenized once with BOS, cut into windows.

use crate::error::{Error, Result};
use crate::model::TextTokenizer;
use std::path::Path;

/// Reads `path` as UTF-8 text; empty or non-UTF-8 files are input errors naming the file.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::input(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Error::input(format!("{}: the text is empty", path.display())));
    }
    Ok(text)
}

/// Tokens of the file at `path` (with BOS), cut to `max_tokens` when given.
pub fn tokenize_file(tok: &TextTokenizer, path: &Path, max_tokens: Option<usize>) -> Result<Vec<u32>> {
    let text = read_text(path)?;
    let mut ids = tok.encode_with_bos(&text)?;
    if let Some(m) = max_tokens {
        ids.truncate(m);
    }
    if ids.len() < 2 {
        return Err(Error::input(format!("{}: fewer than 2 tokens to evaluate", path.display())));
    }
    Ok(ids)
}

/// Non-overlapping windows of `ctx` tokens; a last partial window is kept when it has ≥ 2 tokens.
pub fn windows(tokens: &[u32], ctx: usize) -> Vec<Vec<u32>> {
    tokens.chunks(ctx.max(2)).filter(|w| w.len() >= 2).map(<[u32]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_token_once() {
        let t: Vec<u32> = (0..1030).collect();
        let w = windows(&t, 512);
        assert_eq!(w.iter().map(Vec::len).collect::<Vec<_>>(), vec![512, 512, 6]);
        assert_eq!(w.concat(), t);
        assert_eq!(windows(&t[..513], 512).len(), 1, "a 1-token tail scores nothing");
    }

    #[test]
    fn bad_text_files_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "  \n").unwrap();
        let bin = dir.path().join("bin.txt");
        std::fs::write(&bin, [0x66, 0xff, 0xfe]).unwrap();
        for (p, want) in [(&empty, "empty"), (&bin, "not UTF-8")] {
            let e = read_text(p).unwrap_err();
            assert!(e.to_string().contains(want) && e.exit_code() == 2, "{e}");
        }
        assert_eq!(read_text(&dir.path().join("missing")).unwrap_err().exit_code(), 2);
    }
}
