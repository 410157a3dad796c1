//! Process-wide on/off switches that an environment variable can flip at start (the fused kernels
//! and the decode graph start on, the experimental fusions off), and choices among several ways
//! that one can pick, so that a comparison needs no rebuild.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Once;

/// A switch that starts in its default state unless `var` holds one of `flip`; [`Switch::set`]
/// overrides both.
#[derive(Debug)]
pub struct Switch {
    on: AtomicBool,
    read_env: Once,
    var: &'static str,
    flip: &'static [&'static str],
}

impl Switch {
    /// On unless `var` holds one of `off`.
    pub const fn new(var: &'static str, off: &'static [&'static str]) -> Self {
        Self { on: AtomicBool::new(true), read_env: Once::new(), var, flip: off }
    }

    /// Off unless `var` holds one of `on` (an opt-in).
    pub const fn opt_in(var: &'static str, on: &'static [&'static str]) -> Self {
        Self { on: AtomicBool::new(false), read_env: Once::new(), var, flip: on }
    }

    fn init(&self) {
        self.read_env.call_once(|| {
            // runs before any `set`, so `on` still holds the default here
            if std::env::var(self.var).is_ok_and(|v| self.flip.contains(&v.as_str())) {
                self.on.fetch_xor(true, Ordering::Relaxed);
            }
        });
    }

    /// Turns the switch on or off for the rest of the process, whatever the variable says.
    pub fn set(&self, on: bool) {
        self.init();
        self.on.store(on, Ordering::Relaxed);
    }

    /// Whether the switch is on.
    pub fn get(&self) -> bool {
        self.init();
        self.on.load(Ordering::Relaxed)
    }
}

/// A choice among `ways` (at most 255): the index of the one `var` names at start, else 0 (the
/// default; start-up's check refuses other values); [`Choice::set`] overrides both.
#[derive(Debug)]
pub struct Choice {
    /// 0: not read yet; else 1 + the index.
    at: AtomicU8,
    var: &'static str,
    ways: &'static [&'static str],
}

impl Choice {
    /// The choice `var` picks among `ways`, `ways[0]` by default.
    pub const fn new(var: &'static str, ways: &'static [&'static str]) -> Self {
        Self { at: AtomicU8::new(0), var, ways }
    }

    /// The index of the way in force.
    pub fn get(&self) -> usize {
        match self.at.load(Ordering::Relaxed) {
            0 => {
                let v = std::env::var(self.var).ok();
                let i = self.ways.iter().position(|w| v.as_deref() == Some(*w)).unwrap_or(0);
                // a set() racing this read wins
                let _ = self.at.compare_exchange(0, 1 + i as u8, Ordering::Relaxed, Ordering::Relaxed);
                self.get()
            }
            at => usize::from(at - 1),
        }
    }

    /// Picks way `i` (clamped to the ways) for the rest of the process, whatever the variable says.
    pub fn set(&self, i: usize) {
        self.at.store(1 + i.min(self.ways.len().saturating_sub(1)) as u8, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_starts_it_off_and_set_wins() {
        static S: Switch = Switch::new("MINILAB_TEST_SWITCH_UNSET", &["off"]);
        assert!(S.get());
        S.set(false);
        assert!(!S.get());
        std::env::set_var("MINILAB_TEST_SWITCH_OFF", "off");
        static T: Switch = Switch::new("MINILAB_TEST_SWITCH_OFF", &["off"]);
        assert!(!T.get());
        T.set(true);
        assert!(T.get());
        std::env::set_var("MINILAB_TEST_SWITCH_OTHER", "on");
        static U: Switch = Switch::new("MINILAB_TEST_SWITCH_OTHER", &["off"]);
        assert!(U.get(), "only the listed values turn it off");
    }

    #[test]
    fn an_opt_in_starts_off_until_the_variable_turns_it_on() {
        static S: Switch = Switch::opt_in("MINILAB_TEST_OPT_IN_UNSET", &["1"]);
        assert!(!S.get());
        std::env::set_var("MINILAB_TEST_OPT_IN_ON", "1");
        static T: Switch = Switch::opt_in("MINILAB_TEST_OPT_IN_ON", &["1"]);
        assert!(T.get());
        T.set(false);
        assert!(!T.get());
        std::env::set_var("MINILAB_TEST_OPT_IN_OTHER", "yes");
        static U: Switch = Switch::opt_in("MINILAB_TEST_OPT_IN_OTHER", &["1"]);
        assert!(!U.get(), "only the listed values turn it on");
    }

    #[test]
    fn a_choice_reads_its_variable_once_and_set_wins() {
        static WAYS: &[&str] = &["a", "b", "c"];
        static UNSET: Choice = Choice::new("MINILAB_TEST_CHOICE_UNSET", WAYS);
        assert_eq!(UNSET.get(), 0);
        std::env::set_var("MINILAB_TEST_CHOICE_C", "c");
        static C: Choice = Choice::new("MINILAB_TEST_CHOICE_C", WAYS);
        assert_eq!(C.get(), 2);
        std::env::set_var("MINILAB_TEST_CHOICE_C", "b");
        assert_eq!(C.get(), 2, "read once");
        C.set(1);
        assert_eq!(C.get(), 1);
        C.set(99);
        assert_eq!(C.get(), 2, "clamped to the last way");
        std::env::set_var("MINILAB_TEST_CHOICE_OTHER", "C");
        static OTHER: Choice = Choice::new("MINILAB_TEST_CHOICE_OTHER", WAYS);
        assert_eq!(OTHER.get(), 0, "only the listed values pick");
    }
}
