//! Test-only pause points (feature `__test-hooks`, never on in normal builds): a test
//! stops one handle at an exact step of a multi-round-trip operation (a load between its
//! loader and its fill, a flusher between its lease and its read) and runs another side
//! meanwhile. Without the feature, `pause!` expands to nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Default, Clone)]
struct State {
    /// Points where arrivals stop until released.
    armed: HashMap<&'static str, bool>,
    /// How many times each point was reached.
    reached: HashMap<&'static str, u64>,
    /// How many arrivals at each point were let through while it is armed.
    passed: HashMap<&'static str, u64>,
}

/// Named pause points shared by a test and one cache handle
/// (`CacheConfig::test_hooks`).
#[doc(hidden)]
pub struct Hooks {
    state: watch::Sender<State>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hooks")
    }
}

impl Hooks {
    /// No point armed.
    pub fn new() -> Arc<Hooks> {
        Arc::new(Hooks {
            state: watch::Sender::new(State::default()),
        })
    }

    /// From now on, code reaching `point` stops there until [`Hooks::release`].
    pub fn arm(&self, point: &'static str) {
        self.state.send_modify(|s| {
            s.armed.insert(point, true);
        });
    }

    /// Lets everything stopped at `point` go on, and stops nothing there any more.
    pub fn release(&self, point: &'static str) {
        self.state.send_modify(|s| {
            s.armed.insert(point, false);
        });
    }

    /// Lets the arrivals at `point` so far go on; later ones still stop.
    pub fn step(&self, point: &'static str) {
        self.state.send_modify(|s| {
            let n = s.reached.get(point).copied().unwrap_or(0);
            s.passed.insert(point, n);
        });
    }

    /// How many times `point` was reached so far.
    pub fn count(&self, point: &'static str) -> u64 {
        self.state.borrow().reached.get(point).copied().unwrap_or(0)
    }

    /// Waits until `point` was reached `n` times in all.
    pub async fn reached(&self, point: &'static str, n: u64) {
        let mut rx = self.state.subscribe();
        let _ = rx
            .wait_for(|s| s.reached.get(point).copied().unwrap_or(0) >= n)
            .await;
    }

    /// Called by the code at `point`: counts the arrival, then waits while it is armed.
    pub(crate) async fn at(&self, point: &'static str) {
        let mut rx = self.state.subscribe();
        let mut n = 0;
        self.state.send_modify(|s| {
            let reached = s.reached.entry(point).or_insert(0);
            *reached += 1;
            n = *reached;
        });
        let _ = rx
            .wait_for(|s| {
                !s.armed.get(point).copied().unwrap_or(false)
                    || s.passed.get(point).copied().unwrap_or(0) >= n
            })
            .await;
    }
}
