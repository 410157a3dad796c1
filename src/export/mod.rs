//! Exports of a precision plan to the runtimes people deploy with: llama.cpp (`--tensor-type`
//! lines for `llama-quantize`, and a mixed GGUF written here) and transformers + bitsandbytes.
//!
//! The mapping from a plan to GGML tensor types lives in one place, [`tensor_types`], so that the
//! llama-quantize lines and the GGUF minilab writes always agree.

pub mod bnb;
pub mod gguf;
pub mod hf_meta;
pub mod llamacpp;

use crate::error::{Error, Result};
use crate::model::{LayerId, LayerKind, LlamaConfig};
use crate::quant::Precision;
use std::collections::BTreeMap;
use std::str::FromStr;

/// The GGML tensor types an export may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q8_0,
    Q5_0,
    Q4_0,
    Q4K,
    /// llama.cpp's non-uniform 4-bit codebook (blocks of 32); candle 0.11.1 cannot write it.
    Iq4Nl,
}

impl GgmlType {
    /// The name llama-quantize and the `gguf` Python package use (lower case).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q5_0 => "q5_0",
            Self::Q4_0 => "q4_0",
            Self::Q4K => "q4_k",
            Self::Iq4Nl => "iq4_nl",
        }
    }

    /// Weights per block: a row length must be a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q8_0 | Self::Q5_0 | Self::Q4_0 | Self::Iq4Nl => 32,
            Self::Q4K => 256,
        }
    }

    /// The type llama-quantize falls back to when a row does not fill whole blocks
    /// (`tensor_type_fallback` in llama.cpp's `llama-quant.cpp`): q4_k → q5_0, then f16.
    fn fallback(self, row_len: usize) -> Self {
        let mut t = self;
        if !row_len.is_multiple_of(t.block_size()) && t == Self::Q4K {
            t = Self::Q5_0;
        }
        if !row_len.is_multiple_of(t.block_size()) {
            t = Self::F16;
        }
        t
    }
}

/// The GGML type that stands in for nf4 layers (NF4 has no GGML twin).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FourBit {
    /// Uniform 4-bit, one f16 scale per 32 weights (4.5 bits a weight).
    #[default]
    Q4_0,
    /// Non-uniform 4-bit codebook, one f16 scale per 32 weights (4.5 bits a weight).
    Iq4Nl,
    /// 4-bit k-quant: super-blocks of 256 with 6-bit sub-block scales and minimums (4.5 bits a weight).
    Q4K,
}

impl FourBit {
    /// The GGML type.
    pub fn ggml(self) -> GgmlType {
        match self {
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Iq4Nl => GgmlType::Iq4Nl,
            Self::Q4K => GgmlType::Q4K,
        }
    }
}

impl FromStr for FourBit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "q4_0" => Ok(Self::Q4_0),
            "iq4_nl" => Ok(Self::Iq4Nl),
            "q4_k" => Ok(Self::Q4K),
            other => Err(Error::input(format!("--gguf-4bit: unknown type `{other}` (expected q4_0, iq4_nl or q4_k)"))),
        }
    }
}

/// The GGML type of a plan format: f16→f16, int8→q8_0 (per-32 scales instead of per-row), nf4 and
/// nf4_dq→the chosen 4-bit type.
pub fn ggml_type(p: Precision, four_bit: FourBit) -> GgmlType {
    match p {
        Precision::F16 => GgmlType::F16,
        Precision::Int8 => GgmlType::Q8_0,
        Precision::Nf4 | Precision::Nf4Dq => four_bit.ggml(),
    }
}

/// One weight tensor of the GGUF with the type the plan gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorType {
    /// GGUF tensor name, e.g. `blk.3.attn_q.weight`.
    pub name: String,
    /// The plan layer it comes from (`None`: an untied embedding, which plans keep in f16).
    pub layer: Option<LayerId>,
    /// The type it gets.
    pub ty: GgmlType,
    /// The type the plan asked for, when the row length forced a fallback.
    pub wanted: Option<GgmlType>,
}

/// Length of one weight row (the input features) of a layer kind.
pub fn row_len(cfg: &LlamaConfig, kind: LayerKind) -> usize {
    match kind {
        LayerKind::AttnOutput => cfg.num_attention_heads * cfg.head_dim,
        LayerKind::FfnDown => cfg.intermediate_size,
        _ => cfg.hidden_size,
    }
}

/// Every linear layer id of a model of this config, blocks in order then `output`.
pub fn layer_ids(cfg: &LlamaConfig) -> Vec<LayerId> {
    let mut ids: Vec<LayerId> = (0..cfg.num_hidden_layers)
        .flat_map(|b| LayerKind::BLOCK.into_iter().map(move |k| LayerId::block(b, k)))
        .collect();
    ids.push(LayerId::output());
    ids
}

/// The GGML type of every 2-D weight tensor of the model under `assignment`.
///
/// A tied model has no `output.weight`: the plan's `output` decision is `token_embd.weight`'s. An
/// untied embedding stays f16, as minilab counts it. Where a row is not a whole number of blocks of
/// the wanted type, the type llama-quantize would fall back to is given, and `wanted` says so.
pub fn tensor_types(
    assignment: &BTreeMap<LayerId, Precision>,
    cfg: &LlamaConfig,
    four_bit: FourBit,
) -> Result<Vec<TensorType>> {
    let mut out = Vec::new();
    let mut push = |name: String, layer: Option<LayerId>, want: GgmlType, row: usize| {
        let ty = want.fallback(row);
        out.push(TensorType { name, layer, ty, wanted: (ty != want).then_some(want) });
    };
    let get = |id: LayerId| -> Result<GgmlType> {
        assignment
            .get(&id)
            .map(|p| ggml_type(*p, four_bit))
            .ok_or_else(|| Error::input(format!("plan: no format for layer {id}")))
    };
    let out_ty = get(LayerId::output())?;
    if cfg.tie_word_embeddings {
        push("token_embd.weight".into(), Some(LayerId::output()), out_ty, cfg.hidden_size);
    } else {
        push("token_embd.weight".into(), None, GgmlType::F16, cfg.hidden_size);
        push("output.weight".into(), Some(LayerId::output()), out_ty, cfg.hidden_size);
    }
    for id in layer_ids(cfg).into_iter().filter(|id| id.block.is_some()) {
        push(format!("{id}.weight"), Some(id), get(id)?, row_len(cfg, id.kind));
    }
    Ok(out)
}

/// How many tensors of each type: `q8_0 ×159, q4_0 ×52`.
pub fn describe(types: &[TensorType]) -> String {
    let mut counts: BTreeMap<GgmlType, usize> = BTreeMap::new();
    for t in types {
        *counts.entry(t.ty).or_default() += 1;
    }
    counts.iter().map(|(t, n)| format!("{} ×{n}", t.name())).collect::<Vec<_>>().join(", ")
}

/// The export files a sensitivity run writes beside `plan.yaml`, as (file name, contents):
/// `plan.tensor-types.txt` (`--tensor-type` lines with comments), `plan.tensor-types.list` (for
/// `--tensor-type-file`), `plan.bnb.json`, and `plan.bnb.yaml` when the plan has three levels.
pub fn plan_files(
    assignment: &BTreeMap<LayerId, Precision>,
    cfg: &LlamaConfig,
    layers: &[crate::sensitivity::allocate::LayerOptions],
    fixed: u64,
    metric: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let four_bit = FourBit::default();
    let types = tensor_types(assignment, cfg, four_bit)?;
    let note = four_bit.ggml().name();
    let mut files = vec![
        ("plan.tensor-types.txt".to_string(), llamacpp::tensor_type_args(&types, note).into_bytes()),
        ("plan.tensor-types.list".to_string(), llamacpp::tensor_type_file(&types).into_bytes()),
    ];
    let (doc, near) = bnb::plan_document(assignment, layers, fixed, metric);
    let json = serde_json::to_string_pretty(&doc).map_err(|e| Error::Runtime(e.to_string()))?;
    files.push(("plan.bnb.json".into(), json.into_bytes()));
    if let Some(n) = near {
        let header = format!(
            "nearest two-level plan (f16 + {}) of no more bytes, for transformers + bitsandbytes\n{} bytes; predicted {metric} {:.6}",
            n.format, n.bytes, n.predicted
        );
        files.push(("plan.bnb.yaml".into(), crate::plan::PrecisionPlan::to_yaml(&n.assignment, &header).into_bytes()));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smol() -> LlamaConfig {
        LlamaConfig::preset("smollm2-135m").unwrap()
    }

    #[test]
    fn tied_model_gives_the_output_decision_to_the_embedding() {
        let cfg = smol();
        let mut a: BTreeMap<LayerId, Precision> = layer_ids(&cfg).into_iter().map(|id| (id, Precision::Nf4)).collect();
        a.insert(LayerId::output(), Precision::Int8);
        let t = tensor_types(&a, &cfg, FourBit::Q4_0).unwrap();
        assert_eq!(t.len(), 7 * cfg.num_hidden_layers + 1);
        assert_eq!((t[0].name.as_str(), t[0].ty), ("token_embd.weight", GgmlType::Q8_0));
        assert!(t.iter().all(|x| x.name != "output.weight"));
        assert!(t[1..].iter().all(|x| x.ty == GgmlType::Q4_0));
    }

    #[test]
    fn q4_k_falls_back_like_llama_quantize_where_rows_are_not_256_long() {
        let cfg = smol(); // hidden 576 (not a multiple of 256), intermediate 1536 (a multiple)
        let a: BTreeMap<LayerId, Precision> = layer_ids(&cfg).into_iter().map(|id| (id, Precision::Nf4)).collect();
        let t = tensor_types(&a, &cfg, FourBit::Q4K).unwrap();
        let down = t.iter().find(|x| x.name == "blk.0.ffn_down.weight").unwrap();
        let q = t.iter().find(|x| x.name == "blk.0.attn_q.weight").unwrap();
        assert_eq!((down.ty, down.wanted), (GgmlType::Q4K, None));
        assert_eq!((q.ty, q.wanted), (GgmlType::Q5_0, Some(GgmlType::Q4K)));
    }

    #[test]
    fn a_plan_missing_a_layer_is_an_input_error() {
        let cfg = smol();
        let a: BTreeMap<LayerId, Precision> = [(LayerId::output(), Precision::F16)].into();
        let e = tensor_types(&a, &cfg, FourBit::Q4_0).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_three_level_plan_gets_a_two_level_bnb_plan_file() {
        use crate::sensitivity::allocate::{Choice, LayerOptions};
        let cfg = LlamaConfig::preset("tiny").unwrap();
        let ids = layer_ids(&cfg);
        let layers: Vec<LayerOptions> = ids
            .iter()
            .map(|id| LayerOptions {
                id: id.to_string(),
                choices: [(Precision::F16, 200, 0.0), (Precision::Int8, 100, 0.01), (Precision::Nf4, 50, 0.02)]
                    .map(|(precision, bytes, score)| Choice { precision, bytes, score })
                    .to_vec(),
            })
            .collect();
        let names = |a: &BTreeMap<LayerId, Precision>| -> Vec<String> {
            plan_files(a, &cfg, &layers, 0, "kld").unwrap().into_iter().map(|(n, _)| n).collect()
        };
        let mut a: BTreeMap<LayerId, Precision> = ids.iter().map(|id| (*id, Precision::Int8)).collect();
        assert!(!names(&a).contains(&"plan.bnb.yaml".to_string()), "two levels need no second plan");
        a.insert(ids[0], Precision::Nf4);
        a.insert(LayerId::output(), Precision::F16);
        let n = names(&a);
        for f in ["plan.tensor-types.txt", "plan.tensor-types.list", "plan.bnb.json", "plan.bnb.yaml"] {
            assert!(n.contains(&f.to_string()), "{f} in {n:?}");
        }
    }

    #[test]
    fn four_bit_names_parse() {
        assert_eq!("IQ4_NL".parse::<FourBit>().unwrap(), FourBit::Iq4Nl);
        assert!("q3_k".parse::<FourBit>().is_err());
    }
}
