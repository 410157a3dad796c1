//! Sharding a scan over processes, GPUs and machines: `--shard I/N` scans a deterministic,
//! cost-balanced 1/N of the (layer, format) items into `scan.shard-I-of-N.jsonl` in a shared
//! folder; `--merge` checks that the N journals are complete and agree, then hands the items on.
//! No process talks to another: a cluster's scheduler (Slurm job array, Kubernetes Indexed Job)
//! starts the shards, and a shared folder is all they share.

use super::journal::{self, Header};
use super::scan::ScanItem;
use crate::error::{Error, Result};
use crate::model::{LayerId, LlamaConfig};
use crate::quant::Precision;
use std::path::{Path, PathBuf};

/// Most shards a scan can be cut into.
pub const MAX_SHARDS: usize = 4096;

/// One slice of a scan: shard `index` of `count` (0-based, as `SLURM_ARRAY_TASK_ID` and
/// `JOB_COMPLETION_INDEX` count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("`{s}` is not I/N (shard I of N, 0 ≤ I < N ≤ {MAX_SHARDS}, e.g. 0/4)");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let (index, count) =
            (i.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if count == 0 || count > MAX_SHARDS || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The journal file of a shard (`None`: an unsharded run).
pub fn journal_name(shard: Option<Shard>) -> String {
    match shard {
        Some(s) => format!("scan.shard-{}-of-{}.jsonl", s.index, s.count),
        None => "scan.jsonl".into(),
    }
}

/// The relative cost of scanning one item: an item of block b runs blocks b.. and the head over
/// every window, the head item only the head. Units: weights read per token (attention counted as
/// the `ctx × q_dim` it multiplies).
pub fn item_cost(cfg: &LlamaConfig, id: LayerId, ctx: usize) -> f64 {
    let (h, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
    let kv = (cfg.num_key_value_heads * cfg.head_dim) as f64;
    let block = h * (q + 2.0 * kv) + q * h + 3.0 * h * i + ctx as f64 * q;
    let head = cfg.vocab_size as f64 * h;
    let blocks_run = id.block.map_or(0, |b| cfg.num_hidden_layers.saturating_sub(b));
    blocks_run as f64 * block + head
}

/// The shard of every item: longest-processing-time-first onto the least-loaded shard (ties to
/// the lower index), so every process computes the same split and the shards' costs are within
/// one item of each other.
pub fn assign(costs: &[f64], count: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0f64; count.max(1)];
    let mut shard = vec![0; costs.len()];
    for i in order {
        let s = (0..load.len()).min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b))).unwrap_or(0);
        load[s] += costs[i];
        shard[i] = s;
    }
    shard
}

/// The items (in scan order) that belong to `shard`, all of them when `None`.
pub fn select(
    cfg: &LlamaConfig,
    items: Vec<(LayerId, Precision)>,
    ctx: usize,
    shard: Option<Shard>,
) -> Vec<(LayerId, Precision)> {
    let Some(s) = shard else { return items };
    let costs: Vec<f64> = items.iter().map(|(id, _)| item_cost(cfg, *id, ctx)).collect();
    let owner = assign(&costs, s.count);
    items.into_iter().zip(owner).filter(|(_, o)| *o == s.index).map(|(item, _)| item).collect()
}

/// The shard journals in `out`: their shard count, or an input error when there are none or
/// they disagree on the count.
fn shard_count(out: &Path) -> Result<usize> {
    let entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    let mut counts = std::collections::BTreeSet::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("scan.shard-").and_then(|r| r.strip_suffix(".jsonl")) else { continue };
        if let Some(n) = rest.split_once("-of-").and_then(|(_, n)| n.parse::<usize>().ok()) {
            counts.insert(n);
        }
    }
    match counts.len() {
        0 => Err(Error::input(format!("--merge: no shard journals (scan.shard-I-of-N.jsonl) in {}", out.display()))),
        1 => Ok(counts.into_iter().next().unwrap_or(1)),
        _ => Err(Error::input(format!(
            "--merge: {} holds journals of different shard counts ({}); keep one run per folder",
            out.display(),
            counts.iter().map(|n| format!("of-{n}")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Reads and checks every shard journal of `out` against `header` (this run's settings) and the
/// items each shard owns; returns all items in scan order. Nothing is written: a missing,
/// incomplete or mismatched shard is an input error naming it.
pub fn merge(
    out: &Path,
    header: &Header,
    cfg: &LlamaConfig,
    all: &[(LayerId, Precision)],
    ctx: usize,
) -> Result<Vec<ScanItem>> {
    let count = shard_count(out)?;
    let mut items = Vec::with_capacity(all.len());
    for index in 0..count {
        let shard = Shard { index, count };
        let path: PathBuf = out.join(journal_name(Some(shard)));
        if !path.exists() {
            return Err(Error::input(format!("--merge: shard {shard} is missing ({} not found)", path.display())));
        }
        let (old, done) = journal::read(&path)?;
        if old.settings_hash != header.settings_hash {
            return Err(Error::input(format!(
                "--merge: shard {shard} ({}) was run with other settings: {}",
                path.display(),
                journal::differences(&old.settings, &header.settings)
            )));
        }
        let want = select(cfg, all.to_vec(), ctx, Some(shard));
        let has = |id: &LayerId, f: &Precision| done.iter().any(|d| d.layer == id.to_string() && d.format == *f);
        let missing = want.iter().filter(|(id, f)| !has(id, f)).count();
        if missing > 0 {
            return Err(Error::input(format!(
                "--merge: shard {shard} is incomplete ({} of {} items); finish it with --shard {shard} --resume",
                want.len() - missing,
                want.len()
            )));
        }
        if let Some(extra) =
            done.iter().find(|d| !want.iter().any(|(id, f)| d.layer == id.to_string() && d.format == *f))
        {
            return Err(Error::input(format!(
                "--merge: shard {shard} holds {} {}, which belongs to another shard or to no layer of this model",
                extra.layer, extra.format
            )));
        }
        items.extend(done);
    }
    let pos = |i: &ScanItem| all.iter().position(|(id, f)| i.layer == id.to_string() && i.format == *f);
    items.sort_by_key(pos);
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_parse_and_bad_ones_are_refused() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(" 0 / 1 ".parse::<Shard>(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["4/4", "1/0", "-1/3", "a/b", "3", "1/99999", "18446744073709551616/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(journal_name(Some(Shard { index: 1, count: 3 })), "scan.shard-1-of-3.jsonl");
    }

    #[test]
    fn assignment_is_balanced_and_covers_every_item_once() {
        let cfg = LlamaConfig::preset("llama-3.2-3b").unwrap();
        let mut items = Vec::new();
        for b in 0..cfg.num_hidden_layers {
            for k in crate::model::LayerKind::BLOCK {
                for f in [Precision::Int8, Precision::Nf4] {
                    items.push((LayerId::block(b, k), f));
                }
            }
        }
        items.push((LayerId::output(), Precision::Int8));
        let costs: Vec<f64> = items.iter().map(|(id, _)| item_cost(&cfg, *id, 512)).collect();
        for n in [1, 2, 3, 4, 7] {
            let owner = assign(&costs, n);
            let mut load = vec![0.0; n];
            for (c, o) in costs.iter().zip(&owner) {
                load[*o] += c;
            }
            let (lo, hi) = load.iter().fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
            let biggest = costs.iter().copied().fold(0.0, f64::max);
            assert!(hi - lo <= biggest, "n {n}: loads {load:?}");
            let union: usize =
                (0..n).map(|i| select(&cfg, items.clone(), 512, Some(Shard { index: i, count: n })).len()).sum();
            assert_eq!(union, items.len());
        }
        assert!(
            item_cost(&cfg, LayerId::block(0, crate::model::LayerKind::AttnQ), 512)
                > item_cost(&cfg, LayerId::output(), 512)
        );
    }
}
