//! Where a scan's time goes: wall time per step (encode, blocks, head, metrics, restore), summed
//! over items. With `exact`, the device is synchronized at the end of every step so that queued
//! GPU work is charged to the step that queued it (costs a little overlap; used with `-v`).

use candle_core::Device;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Accumulated step times.
#[derive(Debug, Clone, Default)]
pub struct StepTimes {
    exact: bool,
    steps: BTreeMap<&'static str, (Duration, u64)>,
}

impl StepTimes {
    /// A new accumulator; `exact` synchronizes the device after each step.
    pub fn new(exact: bool) -> Self {
        Self { exact, steps: BTreeMap::new() }
    }

    /// Runs `f` as step `name`, adding its wall time.
    pub fn time<T, E: From<candle_core::Error>>(
        &mut self,
        name: &'static str,
        device: &Device,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let t = Instant::now();
        let r = f()?;
        if self.exact {
            device.synchronize()?;
        }
        let e = self.steps.entry(name).or_default();
        e.0 += t.elapsed();
        e.1 += 1;
        Ok(r)
    }

    /// Seconds per step.
    pub fn seconds(&self) -> BTreeMap<String, f64> {
        self.steps.iter().map(|(k, (d, _))| (k.to_string(), d.as_secs_f64())).collect()
    }

    /// A table of the steps, slowest first: seconds, share, calls, ms per call.
    pub fn table(&self) -> String {
        let total: f64 = self.steps.values().map(|(d, _)| d.as_secs_f64()).sum();
        let mut rows: Vec<_> = self.steps.iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
        let mut s = format!("{:<10} {:>9} {:>6} {:>7} {:>9}\n", "step", "seconds", "share", "calls", "ms/call");
        for (name, (d, n)) in rows {
            let secs = d.as_secs_f64();
            s += &format!(
                "{name:<10} {secs:>9.2} {:>5.1}% {n:>7} {:>9.2}\n",
                100.0 * secs / total.max(1e-12),
                1e3 * secs / (*n).max(1) as f64
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_accumulate_and_errors_pass_through() {
        let mut t = StepTimes::new(true);
        for _ in 0..3 {
            let nap = || {
                std::thread::sleep(Duration::from_millis(2));
                Ok::<_, candle_core::Error>(())
            };
            t.time("a", &Device::Cpu, nap).unwrap();
        }
        let e = t.time("b", &Device::Cpu, || Err::<(), _>(candle_core::Error::Msg("no".into())));
        assert!(e.is_err());
        let s = t.seconds();
        assert!(s["a"] >= 0.006, "{s:?}");
        assert!(!s.contains_key("b"), "a failed step adds nothing");
        assert!(t.table().contains("a ") && t.table().contains("      3"), "{}", t.table());
    }
}
