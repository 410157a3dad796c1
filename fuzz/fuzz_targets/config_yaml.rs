//! YAML config file: `Config::load(Some(path))`. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minilab::config::Config;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch file per fuzzing process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| std::env::temp_dir().join(format!("minilab-fuzz-config-{}.yaml", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch file");
    let _ = Config::load(Some(path));
});
