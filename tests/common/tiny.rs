//! A tiny llama with a real tokenizer, written as a Hugging Face folder: fast enough to run the
//! whole `sensitivity` pipeline in a test.

use candle_core::{DType, Tensor};
use minilab::model::config::LlamaConfig;
use minilab::model::synthetic::SyntheticSource;
use minilab::model::weights::{hf_name, WeightSource};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

/// Writes config.json, tokenizer.json (byte-level BPE over the 256 bytes, no merges, BOS = 256)
/// and model.safetensors (seeded) into `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64) {
    let cfg = serde_json::json!({
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 257, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 512, "tie_word_embeddings": false, "bos_token_id": 256
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let c = LlamaConfig::from_hf_json(&cfg.to_string(), "tiny").unwrap();

    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort();
    let mut vocab: HashMap<String, u32> =
        alphabet.iter().enumerate().map(|(i, ch)| (ch.to_string(), i as u32)).collect();
    vocab.insert("<s>".into(), 256);
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), vec![])
        .build()
        .unwrap();
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::default()));
    tok.with_decoder(Some(ByteLevel::default()));
    tok.save(dir.join("tokenizer.json"), false).unwrap();

    let (h, q, kv, i) =
        (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size);
    let mut names: Vec<(String, Vec<usize>)> = vec![
        ("token_embd.weight".into(), vec![c.vocab_size, h]),
        ("output_norm.weight".into(), vec![h]),
        ("output.weight".into(), vec![c.vocab_size, h]),
    ];
    for b in 0..c.num_hidden_layers {
        for (n, s) in [
            ("attn_norm", vec![h]),
            ("ffn_norm", vec![h]),
            ("attn_q", vec![q, h]),
            ("attn_k", vec![kv, h]),
            ("attn_v", vec![kv, h]),
            ("attn_output", vec![h, q]),
            ("ffn_gate", vec![i, h]),
            ("ffn_up", vec![i, h]),
            ("ffn_down", vec![h, i]),
        ] {
            names.push((format!("blk.{b}.{n}.weight"), s));
        }
    }
    let mut src = SyntheticSource::new(seed);
    let tensors: HashMap<String, Tensor> = names
        .into_iter()
        .map(|(n, s)| {
            // Scale the random weights up so the tiny model has peaked, input-dependent outputs.
            let t = src.tensor(&n, &s, DType::F32).unwrap();
            let t = if n.contains("norm") { t } else { (t * 10.0).unwrap() };
            (hf_name(&n).unwrap(), t)
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
}

/// Some English text for calibration and held-out use.
pub fn write_text(path: &Path, seed: usize) {
    let words = [
        "the", "union", "is", "strong", "and", "we", "will", "build", "a", "nation", "of", "people", "who", "work",
        "together",
    ];
    let text: Vec<&str> = (0..600).map(|k| words[(k * 7 + seed * 3 + k / 5) % words.len()]).collect();
    std::fs::write(path, text.join(" ")).unwrap();
}

/// A tiny model folder with a calibration and a held-out text, in a temp dir kept alive by `dir`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub model: std::path::PathBuf,
    pub calib: std::path::PathBuf,
    pub text: std::path::PathBuf,
}

/// Builds a [`Fixture`] (model seed 11, texts 1 and 2).
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    std::fs::create_dir(&model).unwrap();
    write_tiny_model(&model, 11);
    let (calib, text) = (dir.path().join("calib.txt"), dir.path().join("heldout.txt"));
    write_text(&calib, 1);
    write_text(&text, 2);
    Fixture { dir, model, calib, text }
}

impl Fixture {
    /// `sensitivity` on this fixture at the tests' small settings (64-token windows, 256 tokens,
    /// 2 frontier points, no speed), writing to `out`; callers add the budget and the rest.
    pub fn sensitivity_args(&self, out: &std::path::Path) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec!["sensitivity".into(), "--model".into(), self.model.clone().into()];
        a.extend(["--calib".into(), self.calib.clone().into(), "--text".into(), self.text.clone().into()]);
        for s in ["--ctx", "64", "--calib-tokens", "256", "--max-tokens", "256", "--frontier-points", "2", "--no-speed"]
        {
            a.push(s.into());
        }
        a.extend(["--out".into(), out.as_os_str().to_owned()]);
        a
    }
}
