//! `scan.jsonl` as `--resume`, `--merge` and `minilab plot` read it: bytes → temp file →
//! `journal::read(path)` → `Journal::open(path, header, resume = true)` (with the header the file's own first line
//! carries when it parses, so the fuzzer gets past the settings check) → `report::run::read_scan`.
//! Errors are fine; panics, aborts and hangs are not.

#![no_main]

use libfuzzer_sys::fuzz_target;
use minilab::sensitivity::journal::{Header, Journal};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile_dir();
    let path = dir.join("scan.jsonl");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let header = serde_json::from_slice::<Header>(first)
        .unwrap_or_else(|_| Header::new(serde_json::json!({"model": "fuzz", "ctx": 64})));
    let _ = minilab::sensitivity::journal::read(&path);
    let _ = Journal::open(&path, &header, true);
    let _ = minilab::report::run::read_scan(&path);
    let _ = std::fs::remove_file(&path);
});

/// One folder per fuzzing process (libFuzzer runs inputs one after another in it).
fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("minilab-fuzz-journal-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}
