//! Process-wide on/off switches that an environment variable can start off (the fused kernels,
//! the decode graph), so that a comparison needs no rebuild.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// A switch that starts on unless `var` holds one of `off`; [`Switch::set`] overrides both.
#[derive(Debug)]
pub struct Switch {
    on: AtomicBool,
    read_env: Once,
    var: &'static str,
    off: &'static [&'static str],
}

impl Switch {
    pub const fn new(var: &'static str, off: &'static [&'static str]) -> Self {
        Self { on: AtomicBool::new(true), read_env: Once::new(), var, off }
    }

    fn init(&self) {
        self.read_env.call_once(|| {
            if std::env::var(self.var).is_ok_and(|v| self.off.contains(&v.as_str())) {
                self.on.store(false, Ordering::Relaxed);
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
}
