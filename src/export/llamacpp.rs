//! llama.cpp `llama-quantize` overrides: one anchored pattern per tensor.
//!
//! llama-quantize treats the name in `--tensor-type NAME=TYPE` as a regular expression searched
//! anywhere in each tensor name (`std::regex_search`), and recent versions take the first pattern
//! that matches (older ones the last). An unanchored `output=q8_0` therefore also catches every
//! `blk.N.attn_output.weight`. Anchoring each pattern to one full tensor name makes the result the
//! same whatever the match order.
//!
//! The overrides apply only when the base type given on the command line is a quantized type
//! (llama.cpp skips them for an f16/f32 base), so the documented command passes `Q8_0`.

use super::TensorType;

/// The anchored pattern that matches exactly the tensor `name` (`^blk\.3\.attn_q\.weight$`).
pub fn pattern(name: &str) -> String {
    let mut p = String::with_capacity(name.len() + 8);
    p.push('^');
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('$');
    p
}

/// The llama-quantize command that applies a `--tensor-type-file` to a 16-bit GGUF.
pub fn quantize_command(list_file: &str) -> String {
    format!("llama-quantize --allow-requantize --tensor-type-file {list_file} model-F16.gguf model-plan.gguf Q8_0")
}

/// `--tensor-type 'PATTERN=TYPE'` lines, one per tensor, after `#` comments saying how to use them
/// (`plan.tensor-types.txt`). Paste the lines into a shell command, without the comments.
pub fn tensor_type_args(types: &[TensorType], four_bit_note: &str) -> String {
    let mut s = String::new();
    s.push_str("# llama-quantize --tensor-type arguments for this plan, one anchored pattern per tensor\n");
    s.push_str(&format!("# int8→q8_0, f16→f16, nf4→{four_bit_note}; 1-D norms stay f32\n"));
    s.push_str("# the base type must be a quantized type (Q8_0 below), or llama-quantize ignores the overrides;\n");
    s.push_str("# the same list without comments, for --tensor-type-file: plan.tensor-types.list\n");
    s.push_str(&format!("#   {}\n", quantize_command("plan.tensor-types.list")));
    for t in types.iter().filter(|t| t.wanted.is_some()) {
        let wanted = t.wanted.map_or("", |w| w.name());
        s.push_str(&format!(
            "# {}: rows of {wanted} do not fit its length; llama.cpp's fallback is {}\n",
            t.name,
            t.ty.name()
        ));
    }
    for t in types {
        // single-quoted so that a shell keeps the backslashes and the `$`
        s.push_str(&format!("--tensor-type '{}={}'\n", pattern(&t.name), t.ty.name()));
    }
    s
}

/// `PATTERN=TYPE` tokens, one per line and nothing else, for `llama-quantize --tensor-type-file`
/// (which reads whitespace-separated tokens and has no comment syntax).
pub fn tensor_type_file(types: &[TensorType]) -> String {
    types.iter().map(|t| format!("{}={}\n", pattern(&t.name), t.ty.name())).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{layer_ids, tensor_types, FourBit, GgmlType};
    use super::*;
    use crate::model::{LayerId, LayerKind, LlamaConfig};
    use crate::quant::Precision;
    use std::collections::BTreeMap;

    /// Every tensor name a llama GGUF of this config holds, norms included.
    fn all_tensor_names(cfg: &LlamaConfig) -> Vec<String> {
        let mut v = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
        if !cfg.tie_word_embeddings {
            v.push("output.weight".into());
        }
        for b in 0..cfg.num_hidden_layers {
            for n in ["attn_norm", "ffn_norm"] {
                v.push(format!("blk.{b}.{n}.weight"));
            }
            for k in LayerKind::BLOCK {
                v.push(format!("blk.{b}.{}.weight", k.gguf()));
            }
        }
        v
    }

    /// A plan that uses every format and puts different ones on `output` and `attn_output`, the
    /// pair an unanchored pattern confuses.
    fn mixed(cfg: &LlamaConfig) -> BTreeMap<LayerId, Precision> {
        let p = [Precision::F16, Precision::Int8, Precision::Nf4];
        let mut a: BTreeMap<LayerId, Precision> =
            layer_ids(cfg).into_iter().enumerate().map(|(i, id)| (id, p[i % 3])).collect();
        a.insert(LayerId::output(), Precision::Int8);
        for b in 0..cfg.num_hidden_layers {
            a.insert(LayerId::block(b, LayerKind::AttnOutput), Precision::Nf4);
        }
        a
    }

    fn expected(a: &BTreeMap<LayerId, Precision>, name: &str, tied: bool) -> Option<GgmlType> {
        let name = name.strip_suffix(".weight")?;
        if name.ends_with("norm") {
            return None;
        }
        if name == "token_embd" {
            return Some(if tied {
                super::super::ggml_type(a[&LayerId::output()], FourBit::Q4_0)
            } else {
                GgmlType::F16
            });
        }
        LayerId::parse(name).map(|id| super::super::ggml_type(a[&id], FourBit::Q4_0))
    }

    /// With regex search semantics (llama-quantize's), every weight tensor matches exactly one
    /// pattern, whose type is the plan's, and no norm matches any.
    fn check(cfg: &LlamaConfig) {
        let a = mixed(cfg);
        let types = tensor_types(&a, cfg, FourBit::Q4_0).unwrap();
        let file = tensor_type_file(&types);
        let rules: Vec<(regex::Regex, String)> = file
            .split_whitespace()
            .map(|tok| {
                let (p, t) = tok.rsplit_once('=').unwrap();
                (regex::Regex::new(p).unwrap(), t.to_string())
            })
            .collect();
        for name in all_tensor_names(cfg) {
            let hits: Vec<&String> = rules.iter().filter(|(r, _)| r.is_match(&name)).map(|(_, t)| t).collect();
            match expected(&a, &name, cfg.tie_word_embeddings) {
                Some(ty) => assert_eq!(hits, vec![ty.name()], "{name}"),
                None => assert!(hits.is_empty(), "{name} matched {hits:?}"),
            }
        }
        // the comment-free file and the argument lines carry the same rules
        let args = tensor_type_args(&types, "q4_0");
        let from_args: Vec<&str> =
            args.lines().filter_map(|l| l.strip_prefix("--tensor-type '").and_then(|r| r.strip_suffix('\''))).collect();
        assert_eq!(from_args, file.lines().collect::<Vec<_>>());
    }

    #[test]
    fn every_tensor_matches_exactly_one_pattern_tied() {
        check(&LlamaConfig::preset("smollm2-135m").unwrap());
    }

    #[test]
    fn every_tensor_matches_exactly_one_pattern_untied() {
        let cfg = LlamaConfig::preset("llama-3.1-8b").unwrap();
        assert!(!cfg.tie_word_embeddings);
        check(&cfg);
    }

    #[test]
    fn unanchored_output_would_catch_attn_output() {
        // the bug this module exists for: `output` is found inside `blk.0.attn_output.weight`
        assert!(regex::Regex::new("output").unwrap().is_match("blk.0.attn_output.weight"));
        assert!(!regex::Regex::new(&pattern("output.weight")).unwrap().is_match("blk.0.attn_output.weight"));
        assert_eq!(pattern("blk.12.ffn_down.weight"), r"^blk\.12\.ffn_down\.weight$");
    }

    #[test]
    fn the_file_has_no_comments() {
        let cfg = LlamaConfig::preset("tiny").unwrap();
        let types = tensor_types(&mixed(&cfg), &cfg, FourBit::Q4_0).unwrap();
        assert!(tensor_type_file(&types).split_whitespace().all(|t| t.starts_with('^') && t.contains("$=")));
    }
}
