//! Typed errors of the library. `main` maps them to exit codes: bad input 2, anything else 1.

use std::path::Path;

/// What went wrong, split by who can fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the user supplied is wrong (flag, config, plan, file, model). Exit code 2.
    #[error("{0}")]
    Input(String),
    /// The environment failed (disk full, device error). Exit code 1.
    #[error("{0}")]
    Runtime(String),
    /// A tensor operation failed (shown without candle's captured backtrace).
    #[error("{}", one_line(&.0.to_string()))]
    Candle(#[from] candle_core::Error),
    /// An I/O operation failed where no path is known.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A user-input error with a readable message.
    pub fn input(msg: impl Into<String>) -> Self {
        Self::Input(msg.into())
    }

    /// An I/O failure on `path`: missing or unreadable files are the user's to fix.
    pub fn io(path: &Path, err: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let msg = format!("{}: {err}", path.display());
        match err.kind() {
            NotFound | PermissionDenied | InvalidData | InvalidInput | IsADirectory | NotADirectory => Self::Input(msg),
            _ => Self::Runtime(msg),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Input(_) => 2,
            _ => 1,
        }
    }
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Plans, configs and other small YAML/JSON inputs never come near this size.
pub const SMALL_FILE_CAP: u64 = 1 << 20;
/// config.json, tokenizer.json and safetensors indexes (Llama 3's tokenizer.json is 9 MB).
pub const JSON_FILE_CAP: u64 = 64 << 20;

/// Reads `path` once (a regular file, a pipe or a device alike) and refuses more than `cap` bytes,
/// so `/dev/zero` or a huge file named by mistake is an input error, not unbounded memory.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > cap {
        return Err(Error::input(format!("{}: larger than {} (refused)", path.display(), human_bytes(cap))));
    }
    Ok(bytes)
}

/// [`read_capped`] as UTF-8 text; invalid bytes are an input error naming the offset.
pub fn read_text_capped(path: &Path, cap: u64) -> Result<String> {
    String::from_utf8(read_capped(path, cap)?).map_err(|e| {
        Error::input(format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// `1 MiB`, `64 MiB`, `2 GiB`: sizes in error messages.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n.is_multiple_of(1 << 30) => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// First line of a multi-line message, so errors stay one readable line: parser snippets and
/// candle's captured backtraces (`inner\nbacktrace`) follow the first line and are dropped.
pub fn one_line(s: &str) -> String {
    let first = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reads_refuse_endless_and_oversized_inputs() {
        let e = read_capped(Path::new("/dev/zero"), 1000).unwrap_err();
        assert!(e.to_string().contains("/dev/zero: larger than 1000 bytes"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [b'x'; 1024]).unwrap();
        assert_eq!(read_capped(&p, 1024).unwrap().len(), 1024);
        assert!(read_capped(&p, 1023).unwrap_err().to_string().contains("larger than 1023 bytes"));
        assert_eq!(human_bytes(SMALL_FILE_CAP), "1 MiB");
        assert_eq!(read_capped(dir.path(), 10).unwrap_err().exit_code(), 2, "a folder is the user's mistake");
    }
}
