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
    #[error("{}", crate::plan::one_line(&.0.to_string()))]
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
