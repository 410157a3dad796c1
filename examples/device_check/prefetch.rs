//! `device_check cuda prefetch [MODEL]`: the decode step whose launches ask L2 for the next
//! launch's weights (`kernels::prefetch`'s ways, set in the process) against the step without.
//! The logits must be equal bit for bit, since a prefetch is only a cache hint. Then MODEL's
//! graph-replayed step (default the 3B) is timed per way, the ways alternating three times, ms a
//! token (median).

use candle_core::Device;
use minilab::kernels::prefetch::{set_way, Way};
use minilab::quant::Precision;

const WAYS: [Way; 3] = [Way::Off, Way::Line, Way::Bulk];

pub fn check_prefetch(dev: &Device, name: &str) -> minilab::Result<()> {
    let tokens: Vec<u32> = (0..40u32).map(|i| 1 + (i * 7919 + 13) % 128_000).collect();
    println!("| format | line: logits equal to off | bulk: logits equal to off |");
    println!("| --- | --- | --- |");
    let mut unequal = 0;
    for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
        let mut runs = Vec::new();
        for way in WAYS {
            set_way(way);
            runs.push(super::bf16_decode(dev, p, &tokens, true)?.0);
        }
        let same =
            |i: usize| runs[i].iter().flatten().zip(runs[0].iter().flatten()).all(|(a, b)| a.to_bits() == b.to_bits());
        unequal += usize::from(!same(1)) + usize::from(!same(2));
        println!("| {p} | {} | {} |", if same(1) { "yes" } else { "NO" }, if same(2) { "yes" } else { "NO" });
    }
    println!();
    println!("| model | format | off ms | line ms | bulk ms | line / off | bulk / off |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for p in [Precision::F16, Precision::Int8, Precision::Nf4] {
        let ms = time_ways(dev, name, p)?;
        println!(
            "| {name} | {p} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            ms[0],
            ms[1],
            ms[2],
            ms[1] / ms[0],
            ms[2] / ms[0]
        );
    }
    set_way(Way::Off);
    if unequal > 0 {
        return Err(minilab::Error::Runtime(format!("{unequal} prefetching decode(s) changed the logits")));
    }
    Ok(())
}

/// The median ms a token of graph replays of `name`'s step in `p`, per way of [`WAYS`]: the step is
/// captured again for each way (its launches keep their prefetch arguments), the ways alternating
/// three times.
fn time_ways(dev: &Device, name: &str, p: Precision) -> minilab::Result<Vec<f64>> {
    let loaded = super::timed_model(dev, name, p)?;
    let prompt: Vec<u32> = (0..64u32).map(|i| 1 + (i * 7919 + 13) % 100_000).collect();
    let mut samples = vec![Vec::new(); WAYS.len()];
    for _ in 0..3 {
        for (w, way) in WAYS.into_iter().enumerate() {
            set_way(way);
            samples[w].push(super::replay_ms(dev, &loaded.model, &prompt)?.0);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            s[s.len() / 2]
        })
        .collect())
}
