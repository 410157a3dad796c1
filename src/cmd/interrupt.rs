//! Ctrl-C (SIGINT) handling. During the scan loop the first Ctrl-C asks the loop to stop after the
//! item in progress is journaled; anywhere else, or a second time, the process stops at once
//! (everything finished is already on disk: the journal is synced per item, other files are
//! written atomically). Either way the lock is released, one line says how to resume, and the
//! exit code is 130.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};

const IDLE: u8 = 0;
const SCANNING: u8 = 1;
const STOP: u8 = 2;
static STATE: AtomicU8 = AtomicU8::new(IDLE);

/// The line printed when a run stops early; `journal` is the file the finished items are in.
pub fn message(out: &Path, journal: &str) -> String {
    format!(
        "interrupted: finished layers are saved in {}; continue with the same command plus --resume --out {}",
        out.join(journal).display(),
        out.display()
    )
}

/// Installs the handler (once per process; later calls keep the first).
pub fn install(out: &Path, journal: &str) {
    let line = message(out, journal);
    let r = ctrlc::set_handler(move || {
        if STATE.compare_exchange(SCANNING, STOP, SeqCst, SeqCst).is_ok() {
            crate::report::console::note("\nstop requested (Ctrl-C or SIGTERM): stopping after the layer in progress (Ctrl-C again to stop at once)");
            return;
        }
        crate::sensitivity::lock::release_held();
        crate::report::console::note(&format!("\n{line}"));
        std::process::exit(130);
    });
    if let Err(e) = r {
        tracing::debug!("Ctrl-C handler not installed: {e}");
    }
}

/// Whether Ctrl-C asked the scan to stop: `main` exits with 130 then.
pub fn requested() -> bool {
    STATE.load(SeqCst) == STOP
}

/// The pipeline's view of the handler: stop when asked, and a graceful first Ctrl-C only while
/// the scan loop runs.
pub struct SignalControl;

impl crate::sensitivity::pipeline::Control for SignalControl {
    fn stop_requested(&self) -> bool {
        requested()
    }

    fn scanning(&self, on: bool) {
        if on {
            let _ = STATE.compare_exchange(IDLE, SCANNING, SeqCst, SeqCst);
        } else {
            let _ = STATE.compare_exchange(SCANNING, IDLE, SeqCst, SeqCst);
        }
    }
}
