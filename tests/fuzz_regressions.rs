//! Inputs that crashed the fuzzers (fuzz/README.md), replayed through the same calls as the
//! `gguf` fuzz target: every one must now end in an error or a model, never a panic.

use candle_core::{DType, Device};
use minilab::model::gguf::GgufSource;
use minilab::model::{Model, TextTokenizer};

#[test]
fn gguf_crash_inputs_are_clean_errors() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_string_lossy().starts_with("gguf-") {
            continue;
        }
        seen += 1;
        let Ok(mut src) = GgufSource::open(&path) else { continue };
        let Ok(cfg) = src.config() else { continue };
        if let Ok(tok) = TextTokenizer::from_gguf(src.content(), "fuzz", None) {
            let _ = tok.encode("Hello world 123");
        }
        let _ = Model::load(cfg, &mut src, &Device::Cpu, DType::F32);
    }
    assert!(seen >= 1, "no crash inputs found in {}", dir.display());
}
