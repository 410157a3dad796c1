//! GGUF loader: header → tensor bounds check (`GgufSource::open`), metadata → config,
//! tokenizer-from-GGUF (+ encode/decode), and, for inputs that get that far, the model load
//! (tensor reads, dequantization, Q/K un-permute, RoPE tables). Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minilab::model::gguf::GgufSource;
use minilab::model::{Model, TextTokenizer};
use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch file per fuzzing process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| std::env::temp_dir().join(format!("minilab-fuzz-gguf-{}.gguf", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch file");
    let Ok(mut src) = GgufSource::open(path) else { return };
    let Ok(cfg) = src.config() else { return };
    if let Ok(tok) = TextTokenizer::from_gguf(src.content(), "fuzz", None) {
        if let Ok(ids) = tok.encode("Hello world 123, héllo!") {
            let _ = tok.decode(&ids);
        }
        let _ = tok.encode_with_bos("x");
        let _ = tok.decode(&[0, 1, 2, 255, 256, u32::MAX]);
        let _ = tok.vocab_size();
    }
    let _ = Model::load(cfg, &mut src, &candle_core::Device::Cpu, candle_core::DType::F32);
});
