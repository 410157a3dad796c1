//! The tokenizer built from the demo GGUF's metadata (no tokenizer.json) round-trips text exactly
//! and splits digits as SmolLM's pre-tokenizer does.

mod common;

use candle_core::{DType, Device};
use minilab::model::{self, ModelSpec, TextTokenizer};
use std::sync::OnceLock;

fn tokenizer() -> &'static TextTokenizer {
    static TOK: OnceLock<TextTokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let loaded = model::load(&ModelSpec::Gguf(common::demo_model()), &Device::Cpu, DType::F32).unwrap();
        loaded.tokenizer.expect("the demo GGUF yields a tokenizer")
    })
}

fn assert_round_trip(tok: &TextTokenizer, text: &str, what: &str) -> usize {
    let ids = tok.encode(text).unwrap();
    let back = tok.decode(&ids).unwrap();
    if back != text {
        let at = back.chars().zip(text.chars()).position(|(a, b)| a != b).unwrap_or(back.len().min(text.len()));
        let show = |s: &str| s.chars().skip(at.saturating_sub(20)).take(60).collect::<String>();
        panic!("{what}: decode(encode(t)) != t at char {at}:\n  want {:?}\n  got  {:?}", show(text), show(&back));
    }
    ids.len()
}

#[test]
fn eval_texts_round_trip_exactly() {
    let tok = tokenizer();
    for file in ["eval-data/calib.txt", "eval-data/heldout.txt"] {
        let text = std::fs::read_to_string(common::repo(file)).unwrap();
        let n = assert_round_trip(tok, &text, file);
        let with_bos = tok.encode_with_bos(&text).unwrap();
        assert_eq!(with_bos.len(), n + usize::from(tok.bos().is_some()));
        if let Some(bos) = tok.bos() {
            assert_eq!(with_bos[0], bos);
        }
        eprintln!("{file}: {} bytes, {n} tokens ({} with BOS)", text.len(), with_bos.len());
    }
}

#[test]
fn tricky_strings_round_trip_exactly() {
    let tok = tokenizer();
    let cases = [
        "12345",
        "naïve café — 東京",
        "emoji: 🦀🚀 👩‍👩‍👧 ✔️",
        "two  spaces,   three,\tтаб\n\nblank line\n\n\n  indented\r\nCRLF",
        "<|im_start|>user\nhello<|im_end|>",
        " leading space and trailing space ",
        "",
    ];
    for t in cases {
        assert_round_trip(tok, t, &format!("{t:?}"));
    }
}

#[test]
fn digits_are_split_one_per_token() {
    let tok = tokenizer();
    let ids = tok.encode("2024").unwrap();
    assert_eq!(ids.len(), 4, "encode(\"2024\") = {ids:?}");
    let pieces: Vec<String> = ids.iter().map(|&i| tok.decode(&[i]).unwrap()).collect();
    assert_eq!(pieces, ["2", "0", "2", "4"]);
    let year = tok.encode("in 1776 and 12").unwrap();
    let digits = year.iter().filter(|&&i| tok.decode(&[i]).unwrap().chars().all(|c| c.is_ascii_digit())).count();
    assert_eq!(digits, 6, "every digit its own token: {year:?}");
}

#[test]
fn bos_is_prepended_once() {
    let tok = tokenizer();
    let bos = tok.bos().expect("the demo model has a BOS token");
    let ids = tok.encode_with_bos("Hello world").unwrap();
    assert_eq!(ids[0], bos);
    assert_eq!(ids.iter().filter(|&&i| i == bos).count(), 1);
    assert_eq!(&ids[1..], tok.encode("Hello world").unwrap().as_slice());
}
