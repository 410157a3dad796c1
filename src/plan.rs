//! `PrecisionPlan`: which format each linear layer takes. YAML in, resolved assignments out.
//!
//! ```yaml
//! default: nf4            # every linear of the transformer blocks
//! output: f16             # the LM head (tied with the embedding: one decision); default f16
//! overrides:              # applied in order, later entries win
//!   - blocks: 0-3         # a block, a range "a-b", or a list [0, 5, 7]
//!     kinds: [attn_v, ffn_down]
//!     format: int8
//!   - layers: [blk.10.attn_q, model.layers.11.mlp.down_proj]
//!     format: f16
//! ```

use crate::error::{one_line, Error, Result};
use crate::model::{LayerId, LayerKind};
use crate::quant::Precision;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    default: String,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    overrides: Vec<OverrideFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    blocks: Option<BlockSel>,
    #[serde(default)]
    kinds: Option<Vec<String>>,
    #[serde(default)]
    layers: Option<Vec<String>>,
    format: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum BlockSel {
    One(usize),
    List(Vec<usize>),
    Text(String),
}

/// One ordered override: every selector given must match.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub blocks: Option<Vec<usize>>,
    pub kinds: Option<Vec<LayerKind>>,
    pub layers: Option<Vec<LayerId>>,
    pub format: Precision,
}

impl Override {
    fn matches(&self, id: LayerId) -> bool {
        let block_ok = self.blocks.as_ref().is_none_or(|bs| id.block.is_some_and(|b| bs.contains(&b)));
        let kind_ok = self.kinds.as_ref().is_none_or(|ks| ks.contains(&id.kind));
        let layer_ok = self.layers.as_ref().is_none_or(|ls| ls.contains(&id));
        block_ok && kind_ok && layer_ok
    }
}

/// A precision plan: a default for block linears, one for the LM head, and ordered overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct PrecisionPlan {
    pub default: Precision,
    pub output: Precision,
    pub overrides: Vec<Override>,
}

impl PrecisionPlan {
    /// Every block linear in `p`, the LM head in f16 (the `--precision` shorthand).
    pub fn uniform(p: Precision) -> Self {
        Self { default: p, output: Precision::F16, overrides: vec![] }
    }

    /// Parses plan YAML; `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self> {
        let file: PlanFile = serde_saphyr::from_str(text)
            .map_err(|e| Error::input(format!("{origin}: invalid plan: {}", one_line(&e.to_string()))))?;
        let fmt =
            |s: &str, what: &str| s.parse::<Precision>().map_err(|e| Error::input(format!("{origin}: {what}: {e}")));
        let default = fmt(&file.default, "default")?;
        let output = file.output.as_deref().map(|s| fmt(s, "output")).transpose()?.unwrap_or(Precision::F16);
        let mut overrides = Vec::new();
        for (i, o) in file.overrides.into_iter().enumerate() {
            let what = format!("overrides[{i}]");
            let format = fmt(&o.format, &what)?;
            if o.blocks.is_none() && o.kinds.is_none() && o.layers.is_none() {
                return Err(Error::input(format!("{origin}: {what}: needs at least one of blocks, kinds, layers")));
            }
            let blocks = o
                .blocks
                .map(|b| parse_blocks(b).map_err(|m| Error::input(format!("{origin}: {what}: {m}"))))
                .transpose()?;
            let kinds = o
                .kinds
                .map(|ks| {
                    ks.iter()
                        .map(|k| {
                            LayerKind::parse(k)
                                .ok_or_else(|| Error::input(format!("{origin}: {what}: unknown layer kind `{k}`")))
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?;
            let layers = o
                .layers
                .map(|ls| {
                    ls.iter()
                        .map(|l| {
                            LayerId::parse(l)
                                .ok_or_else(|| Error::input(format!("{origin}: {what}: unknown layer `{l}`")))
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .transpose()?;
            overrides.push(Override { blocks, kinds, layers, format });
        }
        Ok(Self { default, output, overrides })
    }

    /// Reads and parses a plan file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        // Read once with a cap: a plan from a pipe works, `--plan /dev/zero` is refused.
        let text = crate::error::read_text_capped(path, crate::error::SMALL_FILE_CAP)?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// The format of every layer in `ids`; an override that matches none of them is an error.
    pub fn resolve(&self, ids: &[LayerId], origin: &str) -> Result<BTreeMap<LayerId, Precision>> {
        let mut out: BTreeMap<LayerId, Precision> =
            ids.iter().map(|id| (*id, if id.kind == LayerKind::Output { self.output } else { self.default })).collect();
        for (i, o) in self.overrides.iter().enumerate() {
            if let Some(missing) = o.layers.iter().flatten().find(|l| !ids.contains(l)) {
                let n_blocks = ids.iter().filter_map(|id| id.block).max().map_or(0, |b| b + 1);
                return Err(Error::input(format!(
                    "{origin}: overrides[{i}]: layer `{missing}` is not in the model ({n_blocks} blocks)"
                )));
            }
            let mut hit = false;
            for id in ids.iter().filter(|id| o.matches(**id)) {
                out.insert(*id, o.format);
                hit = true;
            }
            if !hit {
                return Err(Error::input(format!("{origin}: overrides[{i}] matches no layer of the model")));
            }
        }
        Ok(out)
    }

    /// A plan that reproduces `assignment` exactly: the most common block format as default, the
    /// rest as per-layer overrides. Written as commented YAML loadable by `--plan`.
    pub fn to_yaml(assignment: &BTreeMap<LayerId, Precision>, header: &str) -> String {
        let mut counts: BTreeMap<Precision, usize> = BTreeMap::new();
        for (id, p) in assignment {
            if id.block.is_some() {
                *counts.entry(*p).or_default() += 1;
            }
        }
        let default =
            counts.iter().max_by_key(|(p, n)| (**n, std::cmp::Reverse(**p))).map_or(Precision::F16, |(p, _)| *p);
        let output = assignment.get(&LayerId::output()).copied().unwrap_or(Precision::F16);
        let mut by_format: BTreeMap<Precision, Vec<String>> = BTreeMap::new();
        for (id, p) in assignment {
            if id.block.is_some() && *p != default {
                by_format.entry(*p).or_default().push(id.to_string());
            }
        }
        let mut s = String::new();
        for line in header.lines() {
            s.push_str(&format!("# {line}\n"));
        }
        s.push_str(&format!("default: {default}\noutput: {output}\n"));
        if by_format.is_empty() {
            s.push_str("overrides: []\n");
        } else {
            s.push_str("overrides:\n");
            for (p, layers) in by_format {
                s.push_str(&format!("  - format: {p}\n    layers:\n"));
                for l in layers {
                    s.push_str(&format!("      - {l}\n"));
                }
            }
        }
        s
    }
}

/// No model has anywhere near this many blocks.
const MAX_BLOCKS: usize = 1 << 16;

fn parse_blocks(sel: BlockSel) -> std::result::Result<Vec<usize>, String> {
    match sel {
        BlockSel::One(b) => Ok(vec![b]),
        BlockSel::List(v) => Ok(v),
        BlockSel::Text(t) => {
            let mut out = Vec::new();
            for part in t.split(',').map(str::trim) {
                let bad = || format!("invalid blocks `{t}` (expected e.g. 3, 0-7 or [1, 4])");
                match part.split_once('-') {
                    Some((a, b)) => {
                        let (a, b): (usize, usize) =
                            (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                        // Ranges are expanded: cap them so a typo cannot allocate billions (found by fuzzing).
                        if a > b || b >= MAX_BLOCKS {
                            return Err(bad());
                        }
                        out.extend(a..=b);
                    }
                    None => out.push(part.parse().map_err(|_| bad())?),
                }
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(blocks: usize) -> Vec<LayerId> {
        let mut v: Vec<LayerId> = (0..blocks).flat_map(|b| LayerKind::BLOCK.map(|k| LayerId::block(b, k))).collect();
        v.push(LayerId::output());
        v
    }

    #[test]
    fn overrides_apply_in_order_with_both_namings() {
        let yaml = "default: nf4\noverrides:\n  - blocks: 0-1\n    kinds: [attn_v, down_proj]\n    format: int8\n  - layers: [model.layers.1.mlp.down_proj]\n    format: f16\n";
        let plan = PrecisionPlan::from_yaml(yaml, "p.yaml").unwrap();
        let r = plan.resolve(&ids(3), "p.yaml").unwrap();
        assert_eq!(r[&LayerId::block(0, LayerKind::AttnV)], Precision::Int8);
        assert_eq!(r[&LayerId::block(1, LayerKind::FfnDown)], Precision::F16);
        assert_eq!(r[&LayerId::block(2, LayerKind::AttnV)], Precision::Nf4);
        assert_eq!(r[&LayerId::output()], Precision::F16);
    }

    #[test]
    fn bad_plans_name_the_entry() {
        let cases = [
            ("default: q5\n", "unknown format `q5`"),
            ("default: nf4\nbogus: 1\n", "bogus"),
            ("default: nf4\noverrides:\n  - layers: [blk.99.attn_q]\n    format: f16\n", "blk.99.attn_q"),
            ("default: nf4\noverrides:\n  - blocks: 50\n    format: f16\n", "overrides[0] matches no layer"),
            ("default: nf4\noverrides:\n  - kinds: [attn_z]\n    format: f16\n", "attn_z"),
            ("default: nf4\noverrides:\n  - format: f16\n", "at least one"),
        ];
        for (yaml, want) in cases {
            let err = PrecisionPlan::from_yaml(yaml, "p.yaml").and_then(|p| p.resolve(&ids(3), "p.yaml").map(|_| p));
            let msg = err.expect_err(yaml).to_string();
            assert!(msg.contains(want) && msg.contains("p.yaml"), "{yaml}: {msg}");
        }
    }

    #[test]
    fn written_plans_load_back_to_the_same_assignment() {
        let mut a: BTreeMap<LayerId, Precision> = ids(4).into_iter().map(|id| (id, Precision::Nf4)).collect();
        a.insert(LayerId::block(2, LayerKind::FfnDown), Precision::F16);
        a.insert(LayerId::block(0, LayerKind::AttnQ), Precision::Int8);
        a.insert(LayerId::output(), Precision::Int8);
        let yaml = PrecisionPlan::to_yaml(&a, "made by a test");
        let back = PrecisionPlan::from_yaml(&yaml, "x").unwrap().resolve(&ids(4), "x").unwrap();
        assert_eq!(back, a);
    }
}
