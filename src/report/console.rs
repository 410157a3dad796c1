//! stdout and stderr as a hostile caller may hand them over: closed (`>&-`), full (`>/dev/full`)
//! or a closed pipe. Every document minilab prints goes through [`print()`], which reports a failed
//! write as an error (exit 1) instead of panicking like `println!` or losing the output silently
//! like Rust's std does on a closed descriptor.

use crate::error::{Error, Result};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by [`guard_std_fds`] when the process started with descriptor 1 closed.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Records which of descriptors 0–2 are closed. Rust's runtime reopens closed standard
/// descriptors on `/dev/null` before `main`, after which `>&-` cannot be told from `>/dev/null`:
/// the binary calls this from an `.init_array` constructor, which runs before that runtime setup.
/// Only `fcntl` and an atomic store: safe that early.
pub fn record_closed_fds() {
    #[cfg(unix)]
    // SAFETY: F_GETFD only queries descriptor 1.
    if unsafe { libc::fcntl(1, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED.store(true, Ordering::SeqCst);
    }
}

/// Run first thing in `main`: any of stdin, stdout, stderr that is closed is reopened on
/// `/dev/null`, so that no file minilab opens later lands on descriptor 1 or 2 (where printed text
/// would go into it). A closed stdout is remembered and makes [`print()`] fail.
pub fn guard_std_fds() {
    #[cfg(unix)]
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor; open/dup2 act on our own descriptors before
        // any other thread exists.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) != -1 {
                continue;
            }
            if fd == 1 {
                STDOUT_CLOSED.store(true, Ordering::SeqCst);
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 && null != fd {
                libc::dup2(null, fd);
                libc::close(null);
            }
        }
    }
}

/// Writes `text` to stdout in one piece and flushes it; a closed or failing stdout is an error.
pub fn print(text: &str) -> Result<()> {
    print_bytes(text.as_bytes())
}

/// [`print()`] for bytes (completion scripts).
pub fn print_bytes(bytes: &[u8]) -> Result<()> {
    if STDOUT_CLOSED.load(Ordering::SeqCst) {
        return Err(Error::Runtime("cannot write the output: stdout is closed".into()));
    }
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Runtime(format!("cannot write the output to stdout: {e}")))
}

/// A line on stderr; a failing stderr is ignored (there is nowhere left to report it).
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// `writeln!` into a `String` (which cannot fail), for documents built before [`print()`].
#[macro_export]
macro_rules! outln {
    ($buf:expr) => {{
        $buf.push('\n');
    }};
    ($buf:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($buf, $($arg)*);
    }};
}
