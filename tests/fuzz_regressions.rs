//! Inputs that crashed the fuzzers (fuzz/README.md), replayed through the same calls as the
//! `gguf` fuzz target: every one must now end in an error or a model, never a panic.

use candle_core::{DType, Device};
use minilab::model::gguf::GgufSource;
use minilab::model::{Model, TextTokenizer};

/// The saved crash inputs of one fuzz target: `tests/fixtures/fuzz/{prefix}*`.
fn crash_inputs(prefix: &str) -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

#[test]
fn gguf_crash_inputs_are_clean_errors() {
    let inputs = crash_inputs("gguf-");
    assert!(!inputs.is_empty(), "no gguf crash inputs found in tests/fixtures/fuzz");
    for path in inputs {
        let Ok(mut src) = GgufSource::open(&path) else { continue };
        let Ok(cfg) = src.config() else { continue };
        if let Ok(tok) = TextTokenizer::from_gguf(src.content(), "fuzz", None) {
            let _ = tok.encode("Hello world 123");
        }
        let _ = Model::load(cfg, &mut src, &Device::Cpu, DType::F32);
    }
}

/// Splits off a `u32`-length-prefixed chunk (the `safetensors_dir` fuzz target's input layout).
fn chunk(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 4 {
        return (data, &[]);
    }
    let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    let rest = &data[4..];
    rest.split_at(n.min(rest.len()))
}

#[test]
fn safetensors_crash_inputs_are_clean_errors() {
    for path in crash_inputs("safetensors_dir-") {
        let data = std::fs::read(&path).unwrap();
        let (config, rest) = chunk(&data);
        let (st, index) = chunk(rest);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("config.json"), config).unwrap();
        std::fs::write(tmp.path().join("model.safetensors"), st).unwrap();
        if !index.is_empty() {
            std::fs::write(tmp.path().join("model.safetensors.index.json"), index).unwrap();
        }
        let r =
            minilab::model::load(&minilab::model::ModelSpec::HfDir(tmp.path().to_path_buf()), &Device::Cpu, DType::F32);
        assert!(r.is_err(), "{}: a crash input loaded", path.display());
    }
}

#[test]
fn plan_crash_inputs_are_clean_errors() {
    for path in crash_inputs("plan_yaml-") {
        let text = std::fs::read_to_string(&path).unwrap();
        let r = minilab::plan::PrecisionPlan::from_yaml(&text, "fuzz");
        assert_eq!(r.unwrap_err().exit_code(), 2, "{}", path.display());
    }
}

#[test]
fn journal_crash_inputs_are_clean_errors() {
    use minilab::sensitivity::journal::{Header, Journal};
    for path in crash_inputs("journal-") {
        let data = std::fs::read(&path).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("scan.jsonl");
        std::fs::write(&p, &data).unwrap();
        let first = data.split(|&b| b == b'\n').next().unwrap_or_default();
        let header = serde_json::from_slice::<Header>(first)
            .unwrap_or_else(|_| Header::new(serde_json::json!({"model": "fuzz", "ctx": 64})));
        let _ = minilab::sensitivity::journal::read(&p);
        let _ = Journal::open(&p, &header, true);
        let _ = minilab::report::run::read_scan(&p);
    }
}
