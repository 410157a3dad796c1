//! Hugging Face folder loader: config.json + model.safetensors (+ model.safetensors.index.json)
//! through `minilab::model::load`. Errors are fine; panics are not.
//!
//! Input layout (little endian): `u32 n` + n bytes of config.json, `u32 m` + m bytes of
//! model.safetensors, then the rest, when non-empty, is model.safetensors.index.json.
//! A length past the end of the input is clamped to what is left.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minilab::model::ModelSpec;
use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch folder per fuzzing process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("minilab-fuzz-st-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("create scratch folder");
        d
    })
}

/// Splits off a `u32`-length-prefixed chunk.
fn chunk(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 4 {
        return (data, &[]);
    }
    let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let rest = &data[4..];
    let n = n.min(rest.len());
    rest.split_at(n)
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let (config, rest) = chunk(data);
    let (st, index) = chunk(rest);
    std::fs::write(dir.join("config.json"), config).expect("write config.json");
    std::fs::write(dir.join("model.safetensors"), st).expect("write model.safetensors");
    let index_path = dir.join("model.safetensors.index.json");
    if index.is_empty() {
        let _ = std::fs::remove_file(&index_path);
    } else {
        std::fs::write(&index_path, index).expect("write index");
    }
    let _ = minilab::model::load(&ModelSpec::HfDir(dir.clone()), &candle_core::Device::Cpu, candle_core::DType::F32);
});
