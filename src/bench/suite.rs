//! A llama-bench style suite: which tests to run, the tokens that feed them, and the records.

use super::{roofline, BenchRecord};
use crate::error::{Error, Result};
use crate::model::{Loaded, Model};
use std::path::Path;

/// Far more repetitions than any timing needs; the sample buffer is sized from it.
pub const MAX_REPS: usize = 100_000;

/// The tests of a run: ppN for each prompt length, tgN for each decode length after `depth`
/// cached tokens, each repeated `reps` times after one warm-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Lengths {
    pub prompts: Vec<usize>,
    pub gens: Vec<usize>,
    pub depth: usize,
    pub reps: usize,
}

impl Lengths {
    /// Checks user-given lengths; as in llama-bench, a lone 0 skips that kind of test.
    pub fn new(prompts: Vec<usize>, gens: Vec<usize>, depth: usize, reps: usize) -> Result<Self> {
        if reps == 0 || reps > MAX_REPS {
            return Err(Error::input(format!("-r/--reps must be between 1 and {MAX_REPS} (got {reps})")));
        }
        if prompts.iter().chain(&gens).all(|&n| n == 0) {
            return Err(Error::input("nothing to run: -p and -n are both 0"));
        }
        if [&prompts, &gens].iter().any(|l| l.contains(&0) && l.len() > 1) {
            return Err(Error::input("0 in a list of lengths: use -p 0 or -n 0 alone to skip that test"));
        }
        let keep = |l: Vec<usize>| l.into_iter().filter(|&n| n > 0).collect();
        Ok(Self { prompts: keep(prompts), gens: keep(gens), depth, reps })
    }

    /// The longest sequence the tests need, checked against the model's context `ctx` (sums of
    /// user-given lengths are checked, never wrapped: `-d 18446744073709551615` is an input error).
    pub fn longest(&self, ctx: usize) -> Result<usize> {
        let prompt = self.prompts.iter().copied().max().unwrap_or(0);
        if prompt > ctx {
            return Err(Error::input(format!("-p {prompt} exceeds the model's context of {ctx} tokens")));
        }
        let gen = self.gens.iter().copied().max().unwrap_or(0);
        match self.depth.checked_add(gen) {
            Some(n) if n <= ctx => Ok(prompt.max(n)),
            _ => Err(Error::input(format!(
                "-d {} plus -n {gen} exceeds the model's context of {ctx} tokens",
                self.depth
            ))),
        }
    }

    /// Timed runs in all (for a progress bar).
    pub fn total_runs(&self) -> usize {
        (self.prompts.len() + self.gens.len()).saturating_mul(self.reps)
    }
}

/// `n` token ids to feed: the text's when the model has a tokenizer (only as much of it as `n`
/// needs is read), else seeded pseudo-random ids; repeated when the text is shorter.
pub fn feed_tokens(loaded: &Loaded, text: &Path, n: usize) -> Result<Vec<u32>> {
    let vocab = loaded.model.config().vocab_size as u64;
    let mut ids = match &loaded.tokenizer {
        // at least 2: the text check wants a token to score, though a one-token prompt needs one
        Some(tok) => crate::eval::text::tokenize_file(tok, text, Some(n.max(2)))?,
        None => {
            (0..n as u64).map(|i| (1 + (i.wrapping_mul(0x9E37_79B9) ^ (i >> 3)) % (vocab - 1).max(1)) as u32).collect()
        }
    };
    while ids.len() < n {
        ids.extend_from_within(..ids.len().min(n - ids.len()));
    }
    ids.truncate(n);
    Ok(ids)
}

/// Runs every test of `len` on `feed` (at least `len.longest(..)` tokens). Each record is `base`
/// with the test's figures filled in; `base.bandwidth > 0` adds the decode roofline and
/// `base.matmul_flops > 0` the prefill's share of the matmul peak.
pub fn run(
    model: &Model,
    feed: &[u32],
    len: &Lengths,
    base: &BenchRecord,
    pb: &indicatif::ProgressBar,
) -> Result<Vec<BenchRecord>> {
    let mut records = Vec::new();
    for &n in &len.prompts {
        let samples = super::time_prefill(model, &feed[..n], len.reps, pb)?;
        let (avg, sd) = super::tokens_per_s(n, &samples);
        let ttft = samples.iter().sum::<u64>() as f64 / samples.len() as f64 / 1e6;
        let test = format!("pp{n}");
        let flops = roofline::prefill_flops(model.config(), n);
        let compute = (base.matmul_flops > 0.0).then(|| roofline::compute_pct(avg, flops, n, base.matmul_flops));
        records.push(BenchRecord {
            test,
            n_prompt: n,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ns: samples,
            ttft_ms: Some(ttft),
            compute_pct: compute,
            ..base.clone()
        });
    }
    // What decode really reads: the encoded tensors in their stored dtype (f32 compute reads 4
    // bytes per 16-bit weight), not the plan's nominal bytes.
    let linear_bytes = model.resident_bytes();
    for &n in &len.gens {
        let timing = super::time_decode(model, &feed[..len.depth], &feed[len.depth..len.depth + n], len.reps, pb)?;
        let (avg, sd) = super::tokens_per_s(n, &timing.samples_ns);
        // mean depth over the run: the cache grows from `depth` to `depth + n`
        let per_token = roofline::bytes_per_token(linear_bytes, super::kv_bytes_per_token(model), len.depth + n / 2);
        let roof = (base.bandwidth > 0.0).then(|| roofline::roofline_pct(avg, base.bandwidth, per_token));
        let test = if len.depth > 0 { format!("tg{n}@d{}", len.depth) } else { format!("tg{n}") };
        records.push(BenchRecord {
            test,
            n_gen: n,
            depth: len.depth,
            avg_ts: avg,
            stddev_ts: sd,
            samples_ns: timing.samples_ns,
            roofline_pct: roof,
            cuda_graph: Some(timing.graph),
            norms_folded: Some(model.folds_norms(1)),
            ..base.clone()
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked_like_llama_bench() {
        assert!(Lengths::new(vec![0], vec![0], 0, 5).is_err());
        assert!(Lengths::new(vec![0, 512], vec![128], 0, 5).is_err());
        assert!(Lengths::new(vec![512], vec![128], 0, 0).is_err());
        assert!(Lengths::new(vec![512], vec![128], 0, MAX_REPS + 1).is_err());
        let l = Lengths::new(vec![0], vec![128, 16], 4, 2).unwrap();
        assert_eq!((l.prompts.len(), l.gens.clone(), l.total_runs()), (0, vec![128, 16], 4));
        assert_eq!(l.longest(1000).unwrap(), 132);
        assert!(l.longest(131).is_err());
        let huge = Lengths::new(vec![1], vec![2], usize::MAX, 1).unwrap();
        assert!(huge.longest(usize::MAX).is_err());
    }
}
