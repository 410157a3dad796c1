//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The demo model, fetched by `scripts/fetch-demo-model.sh` (which `.ci/run` calls first).
pub fn demo_model() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct-Q4_1.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-demo-model.sh first", p.display());
    p
}

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The items of a scan journal (header skipped) without their timing, which differs between runs.
pub fn scan_items(journal: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(journal).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seconds");
            v
        })
        .collect()
}

pub mod hostile;
pub mod hub_server;
pub mod tiny;
