//! A software pipeline across the launches of a decode step (opt-in, `MINILAB_PREFETCH=line|bulk`).
//!
//! A step's GEMVs each read 2–50 MB. A launch that small spends most of its time ramping up and
//! draining, not streaming: on the H200 the loads of a 3B NF4 step's linears alone reach 1.1–1.8
//! TB/s of the 4.2 (BENCHMARKS.md, issue 11 session 6). So while one launch runs, it asks L2 for
//! the next launch's weights (gemv_prefetch.cuh's `Prefetch`, in the `gemv_pf_` kernels). The next launch then
//! reads them from L2 while the DRAM streams the weights of the launch after it.
//!
//! The model says what comes next with a [`Scope`] around each launch ([`next`]). One-row GEMV
//! launches on this thread take the scope's regions while it lives. A prefetch is only a hint to
//! the cache: the arithmetic and the results are the same with or without it.
//!
//! On the H200 (issue 11 session 9, `device_check cuda prefetch` and `gemv_bench --prefetch`) the
//! logits are equal bit for bit, but every way is slower (3B tg128 0.86–0.88×): the extra L2 traffic
//! costs more than the gaps it fills. Kept opt-in, for the record.

use super::many::WeightRef;
use crate::switch::Choice;
use std::cell::Cell;

/// How a launch asks L2 for the next launch's weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Not at all (the default).
    Off,
    /// A `prefetch.global.L2` per 128-byte line, spread over the grid's threads.
    Line,
    /// One `cp.async.bulk.prefetch.L2` per block and region (compute capability 9.0 and later).
    Bulk,
}

/// The most bytes of the next launch asked for: L2 (50–60 MB on a Hopper GPU) also holds this
/// launch's weights, which the launch before asked for.
pub const CAP_BYTES: u64 = 24 << 20;

/// Regions a launch can ask for: three weights and their scales.
const MAX_REGIONS: usize = 6;

/// gemv_prefetch.cuh's `Prefetch`, passed by value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PrefetchArg {
    pub p: [u64; MAX_REGIONS],
    pub n: [u64; MAX_REGIONS],
    pub count: i32,
    pub how: i32,
}

const _: () = assert!(std::mem::size_of::<PrefetchArg>() == 104);

impl PrefetchArg {
    /// The regions `(address, bytes)`, in order, until `cap` bytes: each widened to 16-byte
    /// boundaries (allocations start 256-byte aligned, so the widened region stays inside its pages),
    /// the last one cut to what the cap leaves.
    fn new(regions: &[(u64, u64)], way: Way, cap: u64) -> Option<Self> {
        let how = match way {
            Way::Off => return None,
            Way::Line => 1,
            Way::Bulk => 2,
        };
        let mut arg = Self { how, ..Default::default() };
        let mut left = cap;
        for &(addr, bytes) in regions.iter().take(MAX_REGIONS) {
            let start = addr & !15;
            let end = addr.saturating_add(bytes).saturating_add(15) & !15;
            let take = (end - start).min(left) & !15;
            if take == 0 {
                break;
            }
            let i = arg.count as usize;
            (arg.p[i], arg.n[i]) = (start, take);
            arg.count += 1;
            left -= take;
        }
        (arg.count > 0).then_some(arg)
    }
}

/// The ways in [`WORDS`]' order.
const WAYS: [Way; 3] = [Way::Off, Way::Line, Way::Bulk];
/// The words `MINILAB_PREFETCH` takes, one a way (start-up checks against these).
pub const WORDS: &[&str] = &["off", "line", "bulk"];
static WAY: Choice = Choice::new("MINILAB_PREFETCH", WORDS);

/// The way in force: [`set_way`]'s, else `MINILAB_PREFETCH` (`line`, `bulk`; anything else is off,
/// and the binary refuses values other than `off` at start-up).
pub fn way() -> Way {
    WAYS[WAY.get()]
}

/// Sets the way for the rest of the process (for comparisons in one process), whatever
/// `MINILAB_PREFETCH` says.
pub fn set_way(w: Way) {
    WAY.set(w as usize);
}

thread_local! {
    static CURRENT: Cell<Option<PrefetchArg>> = const { Cell::new(None) };
}

/// The regions the one-row GEMV launches of this thread ask for now.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn current() -> Option<PrefetchArg> {
    CURRENT.with(Cell::get)
}

/// While alive, the one-row GEMV launches of this thread ask L2 for the weights it was made for;
/// dropping it restores what was asked for before.
#[must_use = "the scope ends when dropped"]
pub struct Scope {
    prev: Option<Option<PrefetchArg>>,
}

impl Scope {
    fn set(arg: Option<PrefetchArg>) -> Self {
        Self { prev: Some(CURRENT.with(|c| c.replace(arg))) }
    }

    fn inactive() -> Self {
        Self { prev: None }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            CURRENT.with(|c| c.set(prev));
        }
    }
}

/// The scope of a launch that the launch reading `next` follows: inactive with the way off (then
/// `next` is not walked) or weights that are not on a GPU.
pub fn next<'a>(next: impl IntoIterator<Item = WeightRef<'a>>) -> candle_core::Result<Scope> {
    let way = way();
    if way == Way::Off {
        return Ok(Scope::inactive());
    }
    let mut regions = Vec::with_capacity(MAX_REGIONS);
    for w in next {
        if !w.device().is_cuda() {
            return Ok(Scope::inactive());
        }
        for t in w.tensors() {
            regions.push(super::cuda_range(t)?);
        }
    }
    Ok(Scope::set(PrefetchArg::new(&regions, way, CAP_BYTES)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_widened_to_16_bytes_and_cut_at_the_cap() {
        let arg = PrefetchArg::new(&[(0x1000, 100), (0x2008, 40), (0x3000, 1 << 20)], Way::Bulk, 4096).unwrap();
        assert_eq!(arg.how, 2);
        assert_eq!(arg.count, 3);
        assert_eq!((arg.p[0], arg.n[0]), (0x1000, 112));
        // 0x2008..0x2030 widened to 0x2000..0x2030
        assert_eq!((arg.p[1], arg.n[1]), (0x2000, 48));
        assert_eq!((arg.p[2], arg.n[2]), (0x3000, 4096 - 112 - 48));
        assert!(arg.n.iter().all(|n| n % 16 == 0));
    }

    #[test]
    fn nothing_is_asked_for_when_off_or_capped_to_nothing() {
        assert_eq!(PrefetchArg::new(&[(0, 64)], Way::Off, CAP_BYTES), None);
        assert_eq!(PrefetchArg::new(&[(0, 64)], Way::Line, 8), None);
        assert_eq!(PrefetchArg::new(&[], Way::Line, CAP_BYTES), None);
        let many: Vec<(u64, u64)> = (0..9).map(|i| (i << 20, 64)).collect();
        assert_eq!(PrefetchArg::new(&many, Way::Line, CAP_BYTES).unwrap().count, 6);
    }

    #[test]
    fn a_scope_restores_what_was_asked_for_before() {
        let a = PrefetchArg::new(&[(0x100, 16)], Way::Line, CAP_BYTES);
        let b = PrefetchArg::new(&[(0x200, 32)], Way::Bulk, CAP_BYTES);
        assert_eq!(current(), None);
        {
            let _outer = Scope::set(a);
            assert_eq!(current(), a);
            {
                let _inner = Scope::set(b);
                assert_eq!(current(), b);
                let _off = Scope::inactive();
                assert_eq!(current(), b);
            }
            assert_eq!(current(), a);
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn weights_on_the_cpu_ask_for_nothing() -> candle_core::Result<()> {
        set_way(Way::Bulk);
        let w = candle_core::Tensor::zeros((4, 16), candle_core::DType::F32, &candle_core::Device::Cpu)?;
        let scope = next([WeightRef::Dense(&w)])?;
        assert_eq!(current(), None);
        drop(scope);
        set_way(Way::Off);
        Ok(())
    }
}
