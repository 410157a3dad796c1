//! Tokenizers: `tokenizer.json` when present, else a byte-level BPE built from GGUF metadata.

use crate::error::{Error, Result};
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use std::path::Path;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::Tokenizer;

/// A text tokenizer plus the BOS id the model expects at the start of a text.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    bos: Option<u32>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`.
    pub fn from_file(path: &Path, bos: Option<u32>) -> Result<Self> {
        // Read once with a cap (Llama 3's tokenizer.json is 9 MB).
        let bytes = crate::error::read_capped(path, crate::error::JSON_FILE_CAP)?;
        let inner = Tokenizer::from_bytes(&bytes)
            .map_err(|e| Error::input(format!("{}: invalid tokenizer.json: {e}", path.display())))?;
        Ok(Self { inner, bos })
    }

    /// Builds the tokenizer the GGUF metadata describes (gpt2-style BPE).
    pub fn from_gguf(content: &Content, origin: &str, bos: Option<u32>) -> Result<Self> {
        let mut inner = Tokenizer::from_gguf(content)
            .map_err(|e| Error::input(format!("{origin}: cannot build the tokenizer from GGUF metadata: {e}")))?;
        let pre = super::gguf::meta_str(content, "tokenizer.ggml.pre").unwrap_or_default();
        // SmolLM splits every digit before byte-level BPE (as its tokenizer.json and llama.cpp's
        // `smollm` pre-tokenizer do); candle's generic GPT-2 pipeline would merge digit runs.
        if pre == "smollm" {
            let seq = Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]);
            inner.with_pre_tokenizer(Some(seq));
        }
        // BOS is added by the caller, once per text, so the post-processor must not add it per chunk.
        inner.with_post_processor(None::<tokenizers::PostProcessorWrapper>);
        Ok(Self { inner, bos })
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Runtime(format!("tokenization failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` with BOS prepended (when the model has one).
    pub fn encode_with_bos(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Runtime(format!("detokenization failed: {e}")))
    }

    /// The BOS id.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
