//! Which format each layer gets under a byte budget: a greedy allocator (the mission's literal ask)
//! and an exact one (multiple-choice knapsack), plus random plans of a given size as a baseline.
//!
//! Pure functions: layer sizes and predicted scores in, one choice per layer and a trace out. No
//! tensors, so every rule here is unit-tested with made-up numbers and `minilab plot` can reuse it.
//!
//! Conventions shared by every function:
//! - `fixed_bytes` (embeddings, norms, anything always resident) counts against the budget, and
//!   [`Allocation::bytes`] includes it, so it is directly comparable with `--budget-gb`.
//! - A layer's *cheapest* choice is the one with the fewest bytes (ties: lower score, then lower
//!   index); its *most expensive* is the one with the most bytes (ties: lower score, then lower index).
//! - Scores are predicted increases of the metric; they may be negative or noisy (a layer whose
//!   quantization "helps" on the calibration text). They must be finite.
//! - A budget at or above the all-most-expensive size gives every layer its most expensive choice
//!   (all f16) with a `note`, whatever the scores say: f16 is the reference, so a negative predicted
//!   score for a cheaper format is noise, not a reason to quantize when memory is not short.

use crate::quant::Precision;
use serde::{Deserialize, Serialize};

/// One format a layer may take, with its cost in bytes and its predicted damage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub precision: Precision,
    pub bytes: u64,
    /// Predicted increase of the metric when this layer alone takes this format (f16: normally 0).
    pub score: f64,
}

/// The formats one layer may take; the allocator picks exactly one of `choices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerOptions {
    pub id: String,
    pub choices: Vec<Choice>,
}

/// Which procedure produced an [`Allocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Greedy,
    Optimal,
    Random,
}

/// One promotion of one layer; the trace lets a report explain *why* a layer kept its bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Index into the layer list.
    pub layer: usize,
    /// Choice index before and after the step.
    pub from: usize,
    pub to: usize,
    pub extra_bytes: u64,
    /// Predicted score change (negative = better).
    pub score_delta: f64,
    /// Total bytes (fixed included) after the step.
    pub running_bytes: u64,
}

/// A plan: one choice index per layer, its size and its predicted summed score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// The procedure whose plan this is (an `optimal` call may return greedy's plan: see `note`).
    pub strategy: Strategy,
    /// Index into each layer's `choices`.
    pub choice: Vec<usize>,
    /// Resident weight bytes of the plan, `fixed_bytes` included.
    pub bytes: u64,
    /// Sum of the chosen scores.
    pub predicted: f64,
    /// Promotions from the all-cheapest plan, in the order they were made (optimal: layer order).
    pub trace: Vec<Step>,
    /// Byte granularity of the knapsack DP (optimal only); 1 means exact.
    pub granularity: Option<u64>,
    /// Anything a user should be told about how this plan came about.
    pub note: Option<String>,
}

impl Allocation {
    /// The chosen format of every layer, in layer order.
    pub fn precisions(&self, layers: &[LayerOptions]) -> Vec<Precision> {
        layers.iter().zip(&self.choice).map(|(l, &c)| l.choices[c].precision).collect()
    }
}

/// Why no plan could be made; every message names the numbers a user needs to fix the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocError {
    #[error("no layers to allocate")]
    NoLayers,
    #[error("layer `{0}` has no format to choose from")]
    NoChoices(String),
    #[error("layer `{layer}` has {count} formats to choose from; at most 255 are supported")]
    TooManyChoices { layer: String, count: usize },
    #[error("layer `{layer}`, format {precision}: score {score} is not a finite number")]
    NonFiniteScore { layer: String, precision: Precision, score: f64 },
    #[error("the budget is zero bytes")]
    ZeroBudget,
    #[error(
        "budget of {} is below the minimum of {} (every layer in its cheapest format, \
         fixed tensors included)",
        fmt_bytes(*budget),
        fmt_bytes(*minimum)
    )]
    BelowMinimum { budget: u64, minimum: u64 },
    #[error(
        "no random plan landed within {:.2}% below the target of {}: the closest had {}",
        tolerance * 100.0,
        fmt_bytes(*target),
        fmt_bytes(*closest)
    )]
    RandomPlanMissed { target: u64, closest: u64, tolerance: f64 },
    #[error("the layer times do not match the layers and formats, or are not finite numbers")]
    BadTimes,
    #[error("{}", too_slow(*limit_us, *fastest_us, *smallest_bytes))]
    TooSlow {
        /// The asked-for µs per token.
        limit_us: f64,
        /// The fastest plan within the budget, µs per token (predicted).
        fastest_us: f64,
        /// The smallest plan meeting the time, bytes; `None` when no plan is fast enough.
        smallest_bytes: Option<u64>,
    },
}

/// `x ms/token (y tok/s)`.
pub fn fmt_speed(us: f64) -> String {
    format!("{:.3} ms/token ({:.1} tok/s)", us / 1e3, 1e6 / us)
}

fn too_slow(limit_us: f64, fastest_us: f64, smallest_bytes: Option<u64>) -> String {
    let tail = match smallest_bytes {
        Some(b) => format!("meeting that speed needs at least {}", fmt_bytes(b)),
        None => "no plan of these formats is that fast at any size".into(),
    };
    format!(
        "a decode speed of {} cannot be met within the budget: the fastest plan that fits is predicted at {}; {tail}",
        fmt_speed(limit_us),
        fmt_speed(fastest_us)
    )
}

/// `N bytes = x GB = y GiB`: budgets are given in GB (10⁹ bytes) but people think in GiB too.
pub fn fmt_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    format!("{bytes} bytes = {:.4} GB = {:.4} GiB", b / 1e9, b / (1u64 << 30) as f64)
}

/// Summed score of a plan, always added in layer order so that strategies compare exactly.
pub fn predicted_score(layers: &[LayerOptions], choice: &[usize]) -> f64 {
    layers.iter().zip(choice).map(|(l, &c)| l.choices[c].score).sum()
}

/// Resident bytes of a plan, `fixed_bytes` included.
pub fn plan_bytes(layers: &[LayerOptions], fixed_bytes: u64, choice: &[usize]) -> u64 {
    layers.iter().zip(choice).fold(fixed_bytes, |acc, (l, &c)| acc.saturating_add(l.choices[c].bytes))
}

/// The validated extremes of an instance.
struct Bounds {
    cheapest: Vec<usize>,
    priciest: Vec<usize>,
    min_bytes: u64,
    max_bytes: u64,
}

fn pick_index(choices: &[Choice], most_bytes: bool) -> usize {
    let mut best = 0;
    for (j, c) in choices.iter().enumerate().skip(1) {
        let b = &choices[best];
        let more = if most_bytes { c.bytes > b.bytes } else { c.bytes < b.bytes };
        if more || (c.bytes == b.bytes && c.score < b.score) {
            best = j;
        }
    }
    best
}

impl Bounds {
    fn check(layers: &[LayerOptions], fixed_bytes: u64, budget: u64) -> Result<Self, AllocError> {
        if layers.is_empty() {
            return Err(AllocError::NoLayers);
        }
        for l in layers {
            if l.choices.is_empty() {
                return Err(AllocError::NoChoices(l.id.clone()));
            }
            if l.choices.len() > 255 {
                return Err(AllocError::TooManyChoices { layer: l.id.clone(), count: l.choices.len() });
            }
            if let Some(c) = l.choices.iter().find(|c| !c.score.is_finite()) {
                let (layer, precision, score) = (l.id.clone(), c.precision, c.score);
                return Err(AllocError::NonFiniteScore { layer, precision, score });
            }
        }
        if budget == 0 {
            return Err(AllocError::ZeroBudget);
        }
        let cheapest: Vec<usize> = layers.iter().map(|l| pick_index(&l.choices, false)).collect();
        let priciest: Vec<usize> = layers.iter().map(|l| pick_index(&l.choices, true)).collect();
        let min_bytes = plan_bytes(layers, fixed_bytes, &cheapest);
        let max_bytes = plan_bytes(layers, fixed_bytes, &priciest);
        if budget < min_bytes {
            return Err(AllocError::BelowMinimum { budget, minimum: min_bytes });
        }
        Ok(Self { cheapest, priciest, min_bytes, max_bytes })
    }

    /// At or above the all-most-expensive size there is nothing to decide.
    fn saturated(&self, layers: &[LayerOptions], budget: u64, strategy: Strategy) -> Option<Allocation> {
        (budget >= self.max_bytes).then(|| {
            let mut a = Draft::reaching(layers, self, &self.priciest).finish(layers, strategy);
            a.note = Some(format!(
                "budget of {} is at or above the all-most-expensive size of {}: every layer keeps its \
                 most expensive format",
                fmt_bytes(budget),
                fmt_bytes(self.max_bytes)
            ));
            a
        })
    }
}

/// A plan under construction: promotions are recorded as they are made.
struct Draft {
    choice: Vec<usize>,
    bytes: u64,
    trace: Vec<Step>,
}

impl Draft {
    fn new(b: &Bounds) -> Self {
        Self { choice: b.cheapest.clone(), bytes: b.min_bytes, trace: Vec::new() }
    }

    /// Move `layer` to choice `to` (never cheaper than its current one) and record the step.
    fn promote(&mut self, layers: &[LayerOptions], layer: usize, to: usize) {
        let from = self.choice[layer];
        let (a, b) = (layers[layer].choices[from], layers[layer].choices[to]);
        let extra_bytes = b.bytes - a.bytes;
        self.bytes += extra_bytes;
        let score_delta = b.score - a.score;
        self.trace.push(Step { layer, from, to, extra_bytes, score_delta, running_bytes: self.bytes });
        self.choice[layer] = to;
    }

    /// The cheapest plan promoted, layer by layer, straight to `choice`.
    fn reaching(layers: &[LayerOptions], b: &Bounds, choice: &[usize]) -> Self {
        let mut d = Self::new(b);
        for (i, &to) in choice.iter().enumerate().filter(|&(i, &to)| to != b.cheapest[i]) {
            d.promote(layers, i, to);
        }
        d
    }

    fn finish(self, layers: &[LayerOptions], strategy: Strategy) -> Allocation {
        let predicted = predicted_score(layers, &self.choice);
        let (choice, bytes, trace) = (self.choice, self.bytes, self.trace);
        Allocation { strategy, choice, bytes, predicted, trace, granularity: None, note: None }
    }
}

/// Greedy by score reduction per extra byte.
///
/// Start with every layer in its cheapest choice. At each step consider, for every layer, *every*
/// choice with at least as many bytes as its current one and a strictly lower score (so both "jump
/// to f16" and "one step up nf4 → int8 → f16" are candidates; a jump may skip a rung). Take the one
/// with the largest (score reduction) / (extra bytes) among those that still fit the budget (zero
/// extra bytes counts as an infinite ratio). Ties: larger ratio, then lower layer index, then lower
/// choice index. Stop when no candidate fits or none lowers the score. Every step strictly lowers
/// the score, so it terminates; a candidate that does not fit is skipped, not a stop.
pub fn greedy(layers: &[LayerOptions], fixed_bytes: u64, budget_bytes: u64) -> Result<Allocation, AllocError> {
    let b = Bounds::check(layers, fixed_bytes, budget_bytes)?;
    if let Some(a) = b.saturated(layers, budget_bytes, Strategy::Greedy) {
        return Ok(a);
    }
    let mut d = Draft::new(&b);
    while let Some((layer, to)) = best_upgrade(layers, &d.choice, budget_bytes - d.bytes) {
        d.promote(layers, layer, to);
    }
    Ok(d.finish(layers, Strategy::Greedy))
}

/// The (layer, choice) with the best reduction per byte that fits in `slack`, per [`greedy`]'s rule.
fn best_upgrade(layers: &[LayerOptions], choice: &[usize], slack: u64) -> Option<(usize, usize)> {
    let mut best: Option<(f64, usize, usize)> = None;
    for (i, l) in layers.iter().enumerate() {
        let cur = l.choices[choice[i]];
        for (j, c) in l.choices.iter().enumerate() {
            if c.bytes < cur.bytes || c.score >= cur.score || c.bytes - cur.bytes > slack {
                continue;
            }
            let extra = c.bytes - cur.bytes;
            let gain = cur.score - c.score;
            let ratio = if extra == 0 { f64::INFINITY } else { gain / extra as f64 };
            if best.is_none_or(|(r, _, _)| ratio > r) {
                best = Some((ratio, i, j));
            }
        }
    }
    best.map(|(_, i, j)| (i, j))
}

/// Largest DP width (capacity cells per layer) the automatic granularity allows.
const MAX_CELLS_PER_LAYER: u64 = 200_000;
/// Cap on the whole backtracking table (one byte per cell).
const MAX_TABLE_CELLS: u64 = 40_000_000;

/// Exact multiple-choice knapsack minimizing the summed predicted score, at an automatic granularity.
///
/// See [`optimal_with_granularity`]; the granularity is the smallest that keeps the table within
/// 200 000 cells per layer and 40 M cells overall.
pub fn optimal(layers: &[LayerOptions], fixed_bytes: u64, budget_bytes: u64) -> Result<Allocation, AllocError> {
    optimal_with_granularity(layers, fixed_bytes, budget_bytes, None)
}

/// Multiple-choice knapsack by dynamic programming over bytes in units of `g` (`None`: automatic).
///
/// Only the bytes above the all-cheapest plan are budgeted: every choice's extra bytes over its
/// layer's cheapest are rounded UP to a multiple of `g` and the slack (budget minus all-cheapest)
/// DOWN, so a plan the DP accepts always fits the real budget. A coarse `g` can therefore only make
/// the result conservative (it may leave bytes unused), never break the budget; with `g = 1` the
/// result is exactly optimal. If rounding makes it worse than [`greedy`] on predicted score, greedy's
/// plan is returned instead, with `strategy: Greedy` and a `note` saying so: the result is never
/// worse than greedy.
pub fn optimal_with_granularity(
    layers: &[LayerOptions],
    fixed_bytes: u64,
    budget_bytes: u64,
    granularity: Option<u64>,
) -> Result<Allocation, AllocError> {
    let b = Bounds::check(layers, fixed_bytes, budget_bytes)?;
    if let Some(a) = b.saturated(layers, budget_bytes, Strategy::Optimal) {
        return Ok(a);
    }
    let extras: Vec<Vec<u64>> = (layers.iter().zip(&b.cheapest))
        .map(|(l, &c)| l.choices.iter().map(|ch| ch.bytes - l.choices[c].bytes).collect())
        .collect();
    let max_extra: u64 = extras.iter().map(|e| e.iter().copied().max().unwrap_or(0)).sum();
    let useful = (budget_bytes - b.min_bytes).min(max_extra);
    let cells = MAX_CELLS_PER_LAYER.min(MAX_TABLE_CELLS / layers.len() as u64).max(2);
    let g = granularity.unwrap_or_else(|| useful.div_ceil(cells - 1)).max(1);
    let choice = knapsack(layers, &extras, g, (useful / g) as usize);
    let mut dp = Draft::reaching(layers, &b, &choice).finish(layers, Strategy::Optimal);
    dp.granularity = Some(g);
    let gr = greedy(layers, fixed_bytes, budget_bytes)?;
    if gr.predicted < dp.predicted {
        let note = format!(
            "optimal was asked for, but the knapsack at a granularity of {g} bytes predicted {} while \
             greedy predicted {}: returning greedy's plan (rounding to {g}-byte units cost the difference)",
            dp.predicted, gr.predicted
        );
        return Ok(Allocation { granularity: Some(g), note: Some(note), ..gr });
    }
    Ok(dp)
}

/// The least summed score within `cap` units of `g` bytes over each layer's cheapest choice
/// (rounded up): one choice per layer. The cheapest choices take 0 units, so a plan always fits.
fn knapsack(layers: &[LayerOptions], extras: &[Vec<u64>], g: u64, cap: usize) -> Vec<usize> {
    let scores: Vec<Vec<f64>> = layers.iter().map(|l| l.choices.iter().map(|c| c.score).collect()).collect();
    let units = |i: usize, j: usize| usize::try_from(extras[i][j].div_ceil(g)).unwrap_or(usize::MAX);
    knapsack_by(&scores, units, cap).unwrap_or_else(|| vec![0; layers.len()])
}

/// Multiple-choice knapsack by dynamic programming: one choice `j` per row `i`, least summed
/// `values[i][j]` within `cap` units of `units(i, j)`. Ties keep the lowest choice index. `None`
/// when no combination fits.
fn knapsack_by(values: &[Vec<f64>], units: impl Fn(usize, usize) -> usize, cap: usize) -> Option<Vec<usize>> {
    let w = cap + 1;
    let mut best = vec![0.0f64; w];
    let mut next = vec![f64::INFINITY; w];
    let mut pick = vec![u8::MAX; values.len() * w];
    for (i, v) in values.iter().enumerate() {
        let u: Vec<usize> = (0..v.len()).map(|j| units(i, j)).collect();
        next.fill(f64::INFINITY);
        for c in 0..w {
            for (j, &x) in v.iter().enumerate() {
                if u[j] <= c && best[c - u[j]] + x < next[c] {
                    next[c] = best[c - u[j]] + x;
                    pick[i * w + c] = j as u8;
                }
            }
        }
        std::mem::swap(&mut best, &mut next);
    }
    let mut c = cap;
    if !best[c].is_finite() {
        return None;
    }
    let mut choice = vec![0; values.len()];
    for i in (0..values.len()).rev() {
        let j = pick[i * w + c] as usize;
        choice[i] = j;
        c -= units(i, j);
    }
    Some(choice)
}

/// splitmix64: a tiny, well-mixed, seedable generator, so random baselines need no crate and are
/// reproducible across versions of anything.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by the multiply-shift method.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// How many independent random fills [`random_plan_of_size`] tries before giving up.
const RANDOM_ATTEMPTS: u64 = 64;

/// A random plan of about `target_bytes` (fixed included), the "random plans of the same size" baseline.
///
/// From the all-cheapest plan, repeatedly promote a uniformly random (layer, more expensive choice)
/// pair among those that still fit under `target_bytes`, ignoring scores, until none fits. A fill
/// is accepted when its bytes are within `tolerance` (a fraction, e.g. 0.01) *below* the target; it
/// never exceeds it. Up to 64 fills are tried, each seeded from `seed`, so the result is a pure
/// function of the inputs. A target at or above the all-most-expensive size gives that plan with a note.
pub fn random_plan_of_size(
    layers: &[LayerOptions],
    fixed_bytes: u64,
    target_bytes: u64,
    tolerance: f64,
    seed: u64,
) -> Result<Allocation, AllocError> {
    let b = Bounds::check(layers, fixed_bytes, target_bytes)?;
    if let Some(a) = b.saturated(layers, target_bytes, Strategy::Random) {
        return Ok(a);
    }
    let floor = target_bytes.saturating_sub((target_bytes as f64 * tolerance.max(0.0)) as u64);
    let mut closest = b.min_bytes;
    for attempt in 0..RANDOM_ATTEMPTS {
        let mut rng = SplitMix64(seed ^ attempt.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let a = random_fill(layers, &b, target_bytes, &mut rng);
        if a.bytes >= floor {
            return Ok(a);
        }
        closest = closest.max(a.bytes);
    }
    Err(AllocError::RandomPlanMissed { target: target_bytes, closest, tolerance })
}

fn random_fill(layers: &[LayerOptions], b: &Bounds, target: u64, rng: &mut SplitMix64) -> Allocation {
    let mut d = Draft::new(b);
    let mut cands = Vec::new();
    loop {
        cands.clear();
        for (i, l) in layers.iter().enumerate() {
            let cur = l.choices[d.choice[i]].bytes;
            let fits = |c: &Choice| c.bytes > cur && c.bytes - cur <= target - d.bytes;
            cands.extend(l.choices.iter().enumerate().filter(|(_, c)| fits(c)).map(|(j, _)| (i, j)));
        }
        if cands.is_empty() {
            return d.finish(layers, Strategy::Random);
        }
        let (layer, to) = cands[rng.below(cands.len())];
        d.promote(layers, layer, to);
    }
}

pub mod timed;

#[cfg(test)]
mod tests;
