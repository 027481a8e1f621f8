//! Time for the in-memory backends: the system clock, or a manual one for exact tests.
//!
//! Redis backends never use these: their scripts read the server's `TIME`, so client
//! clock skew cannot break them.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time, as a duration since the UNIX epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time since the UNIX epoch.
    fn now(&self) -> Duration;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use redkit_core::{Clock, ManualClock};
/// use std::time::Duration;
/// let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
/// let other = clock.clone();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(other.now(), Duration::from_millis(1_700_000_001_500));
/// ```
#[derive(Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManualClock({:?})", self.now())
    }
}

fn to_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl ManualClock {
    /// A clock standing at `start` since the UNIX epoch.
    pub fn new(start: Duration) -> Self {
        ManualClock {
            micros: Arc::new(AtomicU64::new(to_micros(start))),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = to_micros(by);
        let _ = self
            .micros
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |m| {
                Some(m.saturating_add(by))
            });
    }

    /// Sets the clock (it may go backwards, to test clock jumps).
    pub fn set(&self, to: Duration) {
        self.micros.store(to_micros(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::SeqCst))
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Duration {
        (**self).now()
    }
}
