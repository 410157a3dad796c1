//! Evaluation text: read, checked, tokenized once with BOS, cut into windows.

use crate::error::{Error, Result};
use crate::model::TextTokenizer;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A text longer than this is refused unless `--max-tokens` says only its start is needed.
pub const TEXT_CAP: u64 = 256 << 20;
/// Tokens kept beyond `--max-tokens` before a cut, so the cut (at whitespace) cannot change any
/// token that is used: tokenizers only look across a few neighbouring characters.
const MARGIN: usize = 64;
const CHUNK: u64 = 64 << 10;

/// A text file (or pipe) opened, checked and read once, only as far as it is needed.
pub struct TextSource {
    path: PathBuf,
    reader: Option<std::fs::File>,
    buf: Vec<u8>,
}

impl TextSource {
    /// Opens `path` and reads until the text is known not to be empty; a missing, empty or
    /// non-UTF-8 file is an input error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut src = Self { path: path.to_path_buf(), reader: Some(file), buf: Vec::new() };
        while !src.prefix()?.chars().any(|c| !c.is_whitespace()) {
            if src.reader.is_none() {
                return Err(Error::input(format!("{}: the text is empty", path.display())));
            }
            src.fill(src.buf.len() as u64 + CHUNK)?;
        }
        Ok(src)
    }

    /// Reads until `upto` bytes are held or the input ends; more than [`TEXT_CAP`] is refused.
    fn fill(&mut self, upto: u64) -> Result<()> {
        let upto = upto.min(TEXT_CAP + 1);
        while let Some(r) = self.reader.as_mut() {
            let have = self.buf.len() as u64;
            if have >= upto {
                break;
            }
            let n = r.take(upto - have).read_to_end(&mut self.buf).map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                self.reader = None;
            }
        }
        if self.buf.len() as u64 > TEXT_CAP {
            return Err(Error::input(format!(
                "{}: larger than {}; pass --max-tokens to use only its start",
                self.path.display(),
                crate::error::human_bytes(TEXT_CAP)
            )));
        }
        Ok(())
    }

    /// The valid UTF-8 read so far (an incomplete character at the end waits for more bytes).
    fn prefix(&self) -> Result<&str> {
        match std::str::from_utf8(&self.buf) {
            Ok(s) => Ok(s),
            Err(e) if e.error_len().is_none() && self.reader.is_some() => {
                Ok(std::str::from_utf8(&self.buf[..e.valid_up_to()]).unwrap_or_default())
            }
            Err(e) => Err(Error::input(format!(
                "{}: not UTF-8 text (invalid byte at offset {})",
                self.path.display(),
                e.valid_up_to()
            ))),
        }
    }

    /// The whole text (at most [`TEXT_CAP`] bytes).
    pub fn read_all(mut self) -> Result<String> {
        self.fill(TEXT_CAP + 1)?;
        self.prefix()?;
        String::from_utf8(self.buf).map_err(|e| Error::input(format!("{}: not UTF-8 text: {e}", self.path.display())))
    }

    /// The tokens (with BOS) of the text, the first `max_tokens` when given: then only as much of
    /// the text is read and tokenized as those tokens need (doubling a guess), the same tokens a
    /// tokenization of the whole text starts with.
    pub fn tokens(mut self, tok: &TextTokenizer, max_tokens: Option<usize>) -> Result<Vec<u32>> {
        let Some(m) = max_tokens else { return tok.encode_with_bos(&self.read_all()?) };
        let mut want = (m.saturating_add(MARGIN) as u64).saturating_mul(8).max(CHUNK);
        loop {
            self.fill(want)?;
            let text = self.prefix()?;
            let done = self.reader.is_none();
            // Cut at the last whitespace, where no tokenizer merges across.
            let cut = if done { text } else { text.rfind(char::is_whitespace).map_or(text, |i| &text[..i]) };
            let mut ids = tok.encode_with_bos(cut)?;
            if done || ids.len() >= m.saturating_add(MARGIN) {
                ids.truncate(m);
                return Ok(ids);
            }
            want = want.saturating_mul(2);
        }
    }
}

/// Reads `path` as UTF-8 text (once: pipes work; at most [`TEXT_CAP`] bytes); empty or non-UTF-8
/// files are input errors naming the file.
pub fn read_text(path: &Path) -> Result<String> {
    TextSource::open(path)?.read_all()
}

/// Tokens of the file at `path` (with BOS), cut to `max_tokens` when given (and then read only as
/// far as those need).
pub fn tokenize_file(tok: &TextTokenizer, path: &Path, max_tokens: Option<usize>) -> Result<Vec<u32>> {
    let ids = TextSource::open(path)?.tokens(tok, max_tokens)?;
    check_tokens(&ids, path)?;
    Ok(ids)
}

/// At least two tokens are needed to score one.
pub fn check_tokens(ids: &[u32], path: &Path) -> Result<()> {
    if ids.len() < 2 {
        return Err(Error::input(format!("{}: fewer than 2 tokens to evaluate", path.display())));
    }
    Ok(())
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
        // Read once, so a pipe works; an endless stream is refused, not read forever.
        let e = read_text(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("larger than 256 MiB") && e.exit_code() == 2, "{e}");
    }

    #[test]
    fn a_character_split_across_reads_is_valid_and_whitespace_only_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        let mut text = " ".repeat(CHUNK as usize - 1);
        text.push_str("é and more");
        std::fs::write(&p, &text).unwrap();
        assert_eq!(read_text(&p).unwrap(), text);
        std::fs::write(&p, " ".repeat(3 * CHUNK as usize)).unwrap();
        assert!(read_text(&p).unwrap_err().to_string().contains("empty"));
    }
}
