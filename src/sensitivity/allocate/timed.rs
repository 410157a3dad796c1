//! Allocation under two limits: resident bytes and predicted decode time per token.
//!
//! `times[i][j]` is the predicted µs of layer `i` in its choice `j` (from a measured
//! [`TimeModel`](crate::bench::time_model::TimeModel)); a plan's time is `fixed_us` plus its
//! layers' times. Formats need not be faster when smaller (NF4 on a CPU can be slower than f16),
//! so the all-cheapest plan is not always the fastest, and a time limit can force promotions.

use super::{knapsack_by, AllocError, Allocation, Bounds, Draft, LayerOptions, Strategy};

/// A limit on the predicted decode time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeLimit {
    /// What every plan pays per token besides its linears, µs.
    pub fixed_us: f64,
    /// Most µs per token the plan may take.
    pub max_us: f64,
}

/// Predicted µs per token of a plan.
pub fn plan_us(times: &[Vec<f64>], fixed_us: f64, choice: &[usize]) -> f64 {
    times.iter().zip(choice).fold(fixed_us, |acc, (t, &c)| acc + t[c])
}

/// Checks the inputs; `Ok(Err(plain))` when the memory-only plan already meets the limit (then
/// the limit changes nothing), else the instance's bounds to allocate from.
fn checked(
    layers: &[LayerOptions],
    times: &[Vec<f64>],
    (fixed_bytes, budget_bytes): (u64, u64),
    limit: TimeLimit,
    memory_only: fn(&[LayerOptions], u64, u64) -> Result<Allocation, AllocError>,
) -> Result<Result<Bounds, Allocation>, AllocError> {
    let b = Bounds::check(layers, fixed_bytes, budget_bytes)?;
    check_times(layers, times, &limit)?;
    let plain = memory_only(layers, fixed_bytes, budget_bytes)?;
    if plan_us(times, limit.fixed_us, &plain.choice) <= limit.max_us {
        return Ok(Err(plain));
    }
    Ok(Ok(b))
}

fn check_times(layers: &[LayerOptions], times: &[Vec<f64>], limit: &TimeLimit) -> Result<(), AllocError> {
    let bad = times.len() != layers.len()
        || layers.iter().zip(times).any(|(l, t)| t.len() != l.choices.len() || t.iter().any(|v| !v.is_finite()));
    if bad || !limit.fixed_us.is_finite() || !(limit.max_us > 0.0 && limit.max_us.is_finite()) {
        return Err(AllocError::BadTimes);
    }
    Ok(())
}

/// Greedy under both limits.
///
/// When the memory-only [`super::greedy`] plan meets the time limit, that plan. Otherwise, from
/// the all-cheapest plan: while it is too slow, take the promotion with the largest time
/// saving per extra byte that fits the budget. Then, as [`super::greedy`], take promotions that
/// lower the score and keep both limits, best first by score reduction per unit of cost, where
/// cost = extra bytes ÷ budget + extra µs ÷ time limit (a move that costs nothing ranks first).
pub fn greedy(
    layers: &[LayerOptions],
    times: &[Vec<f64>],
    fixed_bytes: u64,
    budget_bytes: u64,
    limit: TimeLimit,
) -> Result<Allocation, AllocError> {
    let b = match checked(layers, times, (fixed_bytes, budget_bytes), limit, super::greedy)? {
        Ok(b) => b,
        Err(plain) => return Ok(plain),
    };
    let mut d = Draft::new(&b);
    let mut us = plan_us(times, limit.fixed_us, &d.choice);
    while us > limit.max_us {
        let Some((i, j)) = best_speedup(layers, times, &d.choice, budget_bytes - d.bytes) else {
            // Greedy repair can miss; the fastest plan that fits is exact (within its rounding).
            let fastest = fastest_within(layers, times, &b, budget_bytes);
            match fastest.filter(|c| plan_us(times, limit.fixed_us, c) <= limit.max_us) {
                Some(c) => {
                    d = Draft::reaching(layers, &b, &c);
                    us = plan_us(times, limit.fixed_us, &c);
                    break;
                }
                None => return Err(infeasible(layers, times, &b, (fixed_bytes, budget_bytes), limit)),
            }
        };
        us += times[i][j] - times[i][d.choice[i]];
        d.promote(layers, i, j);
    }
    while let Some((i, j)) = best_move(layers, times, &d, us, budget_bytes, limit) {
        us += times[i][j] - times[i][d.choice[i]];
        d.promote(layers, i, j);
    }
    Ok(d.finish(layers, Strategy::Greedy))
}

/// The promotion (no fewer bytes) with the most µs saved per extra byte that fits `slack`.
fn best_speedup(layers: &[LayerOptions], times: &[Vec<f64>], choice: &[usize], slack: u64) -> Option<(usize, usize)> {
    let mut best: Option<(f64, usize, usize)> = None;
    for (i, l) in layers.iter().enumerate() {
        let cur = l.choices[choice[i]].bytes;
        for (j, c) in l.choices.iter().enumerate() {
            let saved = times[i][choice[i]] - times[i][j];
            if c.bytes < cur || c.bytes - cur > slack || saved <= 0.0 {
                continue;
            }
            let extra = c.bytes - cur;
            let ratio = if extra == 0 { f64::INFINITY } else { saved / extra as f64 };
            if best.is_none_or(|(r, _, _)| ratio > r) {
                best = Some((ratio, i, j));
            }
        }
    }
    best.map(|(_, i, j)| (i, j))
}

fn best_move(
    layers: &[LayerOptions],
    times: &[Vec<f64>],
    d: &Draft,
    us: f64,
    budget: u64,
    limit: TimeLimit,
) -> Option<(usize, usize)> {
    let mut best: Option<(f64, usize, usize)> = None;
    for (i, l) in layers.iter().enumerate() {
        let cur = l.choices[d.choice[i]];
        for (j, c) in l.choices.iter().enumerate() {
            let dt = times[i][j] - times[i][d.choice[i]];
            if c.bytes < cur.bytes || c.score >= cur.score || c.bytes - cur.bytes > budget - d.bytes {
                continue;
            }
            if us + dt > limit.max_us {
                continue;
            }
            let cost = (c.bytes - cur.bytes) as f64 / budget as f64 + dt.max(0.0) / limit.max_us;
            let gain = cur.score - c.score;
            let ratio = if cost <= 0.0 { f64::INFINITY } else { gain / cost };
            if best.is_none_or(|(r, _, _)| ratio > r) {
                best = Some((ratio, i, j));
            }
        }
    }
    best.map(|(_, i, j)| (i, j))
}

/// Most cells of the two-limit table per layer (bytes × time units).
const MAX_CELLS: usize = 400_000;
/// Time units of the two-limit table: the time slack in 1/256 steps.
const TIME_CELLS: usize = 256;
/// Cap on the whole backtracking table (one byte per cell).
const MAX_TABLE_CELLS: usize = 64_000_000;

/// The memory-only [`super::optimal`] plan when it meets the time limit; otherwise the exact
/// multiple-choice knapsack over bytes and time (both rounded up to table units, so a plan
/// it accepts always meets both real limits). Never worse than [`greedy`]: when rounding makes it
/// so, greedy's plan is returned with a note, as [`super::optimal`] does.
pub fn optimal(
    layers: &[LayerOptions],
    times: &[Vec<f64>],
    fixed_bytes: u64,
    budget_bytes: u64,
    limit: TimeLimit,
) -> Result<Allocation, AllocError> {
    let b = match checked(layers, times, (fixed_bytes, budget_bytes), limit, super::optimal)? {
        Ok(b) => b,
        Err(plain) => return Ok(plain),
    };
    let fastest = fastest_times(times);
    let t_slack = limit.max_us - limit.fixed_us - fastest.iter().sum::<f64>();
    let b_slack = budget_bytes - b.min_bytes;
    let per_layer = MAX_CELLS.min(MAX_TABLE_CELLS / layers.len()).max(4);
    let wt = TIME_CELLS.min(per_layer / 2);
    let wb = (per_layer / (wt + 1)).max(1);
    let gt = (t_slack.max(0.0) / wt as f64).max(f64::MIN_POSITIVE);
    let gb = b_slack.div_ceil(wb as u64).max(1);
    let units = |i: usize, j: usize| -> (usize, usize) {
        let eb = (layers[i].choices[j].bytes - layers[i].choices[b.cheapest[i]].bytes).div_ceil(gb);
        let et = ((times[i][j] - fastest[i]) / gt).ceil().min(1e18);
        (usize::try_from(eb).unwrap_or(usize::MAX), et as usize)
    };
    let dp = (t_slack >= 0.0).then(|| knapsack2(layers, units, (b_slack / gb) as usize, wt)).flatten().map(|c| {
        let mut a = Draft::reaching(layers, &b, &c).finish(layers, Strategy::Optimal);
        a.granularity = Some(gb);
        a
    });
    match (dp, greedy(layers, times, fixed_bytes, budget_bytes, limit)) {
        (Some(dp), Ok(gr)) if gr.predicted < dp.predicted => Ok(rounded_note(gr, gb, gt)),
        (Some(dp), _) => Ok(dp),
        (None, Ok(gr)) => Ok(rounded_note(gr, gb, gt)),
        (None, Err(e)) => Err(e),
    }
}

fn rounded_note(gr: Allocation, gb: u64, gt: f64) -> Allocation {
    let note = format!(
        "optimal was asked for, but the two-limit knapsack at {gb}-byte and {gt:.2} µs units did no better than \
         greedy: returning greedy's plan"
    );
    Allocation { granularity: Some(gb), note: Some(note), ..gr }
}

/// Least summed score with at most `cap_b` byte units and `cap_t` time units; `None` when the
/// rounded table has no plan at all.
fn knapsack2(
    layers: &[LayerOptions],
    units: impl Fn(usize, usize) -> (usize, usize),
    cap_b: usize,
    cap_t: usize,
) -> Option<Vec<usize>> {
    let (wb, wt) = (cap_b + 1, cap_t + 1);
    let cells = wb * wt;
    let mut best = vec![0.0f64; cells];
    let mut next = vec![f64::INFINITY; cells];
    let mut pick = vec![u8::MAX; layers.len() * cells];
    for (i, l) in layers.iter().enumerate() {
        let w: Vec<(usize, usize)> = (0..l.choices.len()).map(|j| units(i, j)).collect();
        next.fill(f64::INFINITY);
        for cb in 0..wb {
            for ct in 0..wt {
                let c = cb * wt + ct;
                for (j, ch) in l.choices.iter().enumerate() {
                    let (ub, ut) = w[j];
                    if ub <= cb && ut <= ct {
                        let v = best[(cb - ub) * wt + ct - ut] + ch.score;
                        if v < next[c] {
                            next[c] = v;
                            pick[i * cells + c] = j as u8;
                        }
                    }
                }
            }
        }
        std::mem::swap(&mut best, &mut next);
    }
    let (mut cb, mut ct) = (cap_b, cap_t);
    if !best[cb * wt + ct].is_finite() {
        return None;
    }
    let mut choice = vec![0; layers.len()];
    for i in (0..layers.len()).rev() {
        let j = pick[i * cells + cb * wt + ct] as usize;
        choice[i] = j;
        let (ub, ut) = units(i, j);
        cb -= ub;
        ct -= ut;
    }
    Some(choice)
}

/// The limits a user can have instead: the fastest plan within the budget and the smallest plan
/// that meets the time, each the optimum of a one-limit knapsack whose weights are rounded up to
/// 1/4096 of the slack, so both figures are attainable.
fn infeasible(
    layers: &[LayerOptions],
    times: &[Vec<f64>],
    b: &Bounds,
    (fixed_bytes, budget): (u64, u64),
    limit: TimeLimit,
) -> AllocError {
    let fastest_of = fastest_times(times);
    let fastest =
        fastest_within(layers, times, b, budget).map_or(f64::INFINITY, |c| plan_us(times, limit.fixed_us, &c));
    let t_slack = limit.max_us - limit.fixed_us - fastest_of.iter().sum::<f64>();
    let smallest = (t_slack >= 0.0)
        .then(|| {
            let gt = (t_slack / SEARCH_CELLS as f64).max(f64::MIN_POSITIVE);
            let time_units = |i: usize, j: usize| ((times[i][j] - fastest_of[i]) / gt).ceil().min(1e18) as usize;
            let bytes: Vec<Vec<f64>> =
                layers.iter().map(|l| l.choices.iter().map(|c| c.bytes as f64).collect()).collect();
            knapsack_by(&bytes, time_units, SEARCH_CELLS).map(|c| super::plan_bytes(layers, fixed_bytes, &c))
        })
        .flatten();
    AllocError::TooSlow { limit_us: limit.max_us, fastest_us: fastest, smallest_bytes: smallest }
}

/// The plan with the least predicted time within `budget` (bytes rounded up to 1/4096 of the
/// slack, so it always fits).
fn fastest_within(layers: &[LayerOptions], times: &[Vec<f64>], b: &Bounds, budget: u64) -> Option<Vec<usize>> {
    let slack_b = budget.saturating_sub(b.min_bytes);
    let gb = slack_b.div_ceil(SEARCH_CELLS as u64).max(1);
    let units = |i: usize, j: usize| {
        let extra = layers[i].choices[j].bytes - layers[i].choices[b.cheapest[i]].bytes;
        usize::try_from(extra.div_ceil(gb)).unwrap_or(usize::MAX)
    };
    knapsack_by(times, units, (slack_b / gb) as usize)
}

/// Each layer's least time over its choices.
fn fastest_times(times: &[Vec<f64>]) -> Vec<f64> {
    times.iter().map(|t| t.iter().copied().fold(f64::INFINITY, f64::min)).collect()
}

/// Resolution of the searches behind an infeasibility message.
const SEARCH_CELLS: usize = 4096;

#[cfg(test)]
#[path = "timed_tests.rs"]
mod tests;
