//! `device_check cuda prefetch|staged|rope|grid [MODEL]`: the ways of a process-wide GEMV setting
//! against its first (the default), which the check leaves the process in. No setting changes the
//! arithmetic (a prefetch is only a cache hint; the staged kernels sum in the plain kernels' order;
//! the q/k/v launch rounds q and k before rotating them, as the separate RoPE kernel reads them; a
//! resident grid runs the same warps' code on the same rows; the streaming kernels sum each row as
//! the shipped ones do), so the decode logits of every way must equal the first way's bit for bit.
//! Then MODEL's graph-replayed step (default the 3B) is timed per way, the ways alternating three
//! times, ms a token (median).

use candle_core::Device;
use minilab::kernels::grid::{self, Grid};
use minilab::kernels::prefetch::{set_way, Way};
use minilab::kernels::set_fuse_rope;
use minilab::kernels::staging::set_staged;
use minilab::quant::Precision;

use super::FORMATS;

/// One way of a setting: its name and how to put the process in it.
pub(super) struct Setting {
    pub name: &'static str,
    pub set: fn(),
}

/// `kernels::prefetch`: each GEMV launch of the step asks L2 for the next launch's weights.
pub fn check_prefetch(dev: &Device, name: &str) -> minilab::Result<()> {
    let ways = [
        Setting { name: "off", set: || set_way(Way::Off) },
        Setting { name: "line", set: || set_way(Way::Line) },
        Setting { name: "bulk", set: || set_way(Way::Bulk) },
    ];
    check_ways(dev, name, "prefetching", &ways)
}

/// `kernels::staging`: the one-row GEMVs stage their weights through shared memory.
pub fn check_staged(dev: &Device, name: &str) -> minilab::Result<()> {
    let ways =
        [Setting { name: "off", set: || set_staged(false) }, Setting { name: "staged", set: || set_staged(true) }];
    check_ways(dev, name, "staged", &ways)
}

/// `kernels::many`: the separate `rope_kv` kernel against RoPE and the KV append in the q/k/v launch
/// (the default, first, so that the check leaves the process in it).
pub fn check_rope(dev: &Device, name: &str) -> minilab::Result<()> {
    let ways = [
        Setting { name: "fused", set: || set_fuse_rope(true) },
        Setting { name: "separate", set: || set_fuse_rope(false) },
    ];
    check_ways(dev, name, "separate-RoPE", &ways)
}

/// `kernels::grid`: GEMV launches on resident grids, and the streaming one-row kernels, against a
/// warp per row group.
pub fn check_grid(dev: &Device, name: &str) -> minilab::Result<()> {
    let ways = [
        Setting { name: "rows", set: || grid::set(Grid::Rows) },
        Setting { name: "resident", set: || grid::set(Grid::Resident) },
        Setting { name: "stream", set: || grid::set(Grid::Stream) },
        Setting { name: "stream-regs", set: || grid::set(Grid::StreamRegs) },
    ];
    check_ways(dev, name, "GEMV-grid", &ways)
}

fn check_ways(dev: &Device, name: &str, what: &str, ways: &[Setting]) -> minilab::Result<()> {
    let tokens: Vec<u32> = (0..40u32).map(|i| 1 + (i * 7919 + 13) % 128_000).collect();
    let others = &ways[1..];
    println!(
        "| format |{}",
        others.iter().map(|w| format!(" {}: logits equal to {} |", w.name, ways[0].name)).collect::<String>()
    );
    println!("| --- |{}", " --- |".repeat(others.len()));
    let mut unequal = 0;
    for p in FORMATS {
        let mut runs = Vec::new();
        for way in ways {
            (way.set)();
            runs.push(super::bf16_decode(dev, p, &tokens, true)?.0);
        }
        let same =
            |i: usize| runs[i].iter().flatten().zip(runs[0].iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits());
        let row: String = (1..ways.len()).map(|i| if same(i) { " yes |" } else { " NO |" }).collect();
        unequal += (1..ways.len()).filter(|&i| !same(i)).count();
        println!("| {p} |{row}");
    }
    println!();
    println!(
        "| model | format |{}{}",
        ways.iter().map(|w| format!(" {} ms |", w.name)).collect::<String>(),
        others.iter().map(|w| format!(" {} / {} |", w.name, ways[0].name)).collect::<String>()
    );
    println!("| --- | --- |{}", " ---: |".repeat(2 * ways.len() - 1));
    for p in FORMATS {
        let ms = time_ways(dev, name, p, ways)?;
        let ratios: String = ms[1..].iter().map(|m| format!(" {:.3} |", m / ms[0])).collect();
        println!("| {name} | {p} |{}{ratios}", ms.iter().map(|m| format!(" {m:.3} |")).collect::<String>());
    }
    (ways[0].set)();
    if unequal > 0 {
        return Err(minilab::Error::Runtime(format!("{unequal} {what} decode(s) changed the logits")));
    }
    Ok(())
}

/// The median ms a token of graph replays of `name`'s step in `p`, per way ([`time_ways_on`]).
fn time_ways(dev: &Device, name: &str, p: Precision, ways: &[Setting]) -> minilab::Result<Vec<f64>> {
    time_ways_on(dev, &super::timed_model(dev, name, p)?.model, ways)
}

/// The median ms a token of graph replays of `model`'s step, per way: the step is captured again
/// for each way (its launches keep the kernels and arguments of their capture), the ways
/// alternating three times.
pub(super) fn time_ways_on(dev: &Device, model: &minilab::model::Model, ways: &[Setting]) -> minilab::Result<Vec<f64>> {
    let prompt: Vec<u32> = (0..64u32).map(|i| 1 + (i * 7919 + 13) % 100_000).collect();
    let mut samples = vec![Vec::new(); ways.len()];
    for _ in 0..3 {
        for (w, way) in ways.iter().enumerate() {
            (way.set)();
            samples[w].push(super::replay_ms(dev, model, &prompt)?.0);
        }
    }
    Ok(samples.into_iter().map(|mut s| super::median(&mut s)).collect())
}
