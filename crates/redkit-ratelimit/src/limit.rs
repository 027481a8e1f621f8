//! Limits: an algorithm with its capacity and window, built by readable constructors.

use std::fmt;
use std::time::Duration;

use crate::{Error, Result};

/// The largest capacity (and the most points one call may add): 2^40, so every count and
/// time stays exact in the doubles Lua computes with.
pub const MAX_CAPACITY: u64 = 1 << 40;

/// The longest window, period or block: 2^45 microseconds (about 1.1 years).
pub const MAX_WINDOW: Duration = Duration::from_micros(1 << 45);

/// The largest limit of a sliding log, which keeps one entry per admitted unit.
pub const MAX_LOG_CAPACITY: u64 = 10_000;

/// The rate-limiting algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// A count per window; resets at the window's end. Cheapest; up to twice the limit can
    /// pass around a window boundary.
    FixedWindow,
    /// The current window's count plus the previous one's, weighted by how much of it the
    /// sliding window still covers. An estimate that smooths the boundary burst.
    SlidingWindow,
    /// Every admitted unit is logged with its time: exact over any window, memory and CPU
    /// grow with the limit (at most [`MAX_LOG_CAPACITY`]).
    SlidingLog,
    /// A bucket of `capacity` tokens refilled continuously; a request takes `cost` tokens.
    TokenBucket,
    /// The generic cell rate algorithm (leaky bucket as a meter): a steady rate with a
    /// burst allowance. Decides exactly like the token bucket; one integer of state.
    Gcra,
}

impl Algorithm {
    /// The short code used in key names.
    fn code(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fw",
            Algorithm::SlidingWindow => "sw",
            Algorithm::SlidingLog => "sl",
            Algorithm::TokenBucket => "tb",
            Algorithm::Gcra => "gc",
        }
    }

    /// The algorithm's number in the script.
    pub(crate) fn script_id(self) -> u8 {
        match self {
            Algorithm::FixedWindow => 1,
            Algorithm::SlidingWindow => 2,
            Algorithm::SlidingLog => 3,
            Algorithm::TokenBucket | Algorithm::Gcra => 4,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::FixedWindow => "fixed window",
            Algorithm::SlidingWindow => "sliding window",
            Algorithm::SlidingLog => "sliding log",
            Algorithm::TokenBucket => "token bucket",
            Algorithm::Gcra => "GCRA",
        })
    }
}

/// One limit: an algorithm, a capacity and a window (or a rate), optionally named and
/// with a block after a denial.
///
/// ```
/// use redkit_ratelimit::Limit;
/// use std::time::Duration;
/// let per_minute = Limit::fixed_window(100, Duration::from_secs(60)).name("minute");
/// let steady = Limit::gcra(10, Duration::from_secs(1)).burst(20);
/// let bucket = Limit::token_bucket(50, 5, Duration::from_secs(1)); // 50 tokens, 5 back per second
/// let exact = Limit::sliding_log(5, Duration::from_secs(60)).block_for(Duration::from_secs(900));
/// # let _ = (per_minute, steady, bucket, exact);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    algorithm: Algorithm,
    /// Window algorithms: the limit per window. Buckets: the capacity (burst).
    capacity: u64,
    /// Window algorithms: the window. Buckets: the period in which `rate` units refill.
    window: Duration,
    /// Buckets: units refilled per `window`.
    rate: u64,
    name: Option<String>,
    block: Duration,
}

impl Limit {
    fn new(algorithm: Algorithm, capacity: u64, window: Duration, rate: u64) -> Limit {
        Limit {
            algorithm,
            capacity,
            window,
            rate,
            name: None,
            block: Duration::ZERO,
        }
    }

    /// At most `limit` units per fixed window of `window`.
    pub fn fixed_window(limit: u64, window: Duration) -> Limit {
        Limit::new(Algorithm::FixedWindow, limit, window, limit)
    }

    /// At most about `limit` units in any `window` (sliding window counter estimate).
    pub fn sliding_window(limit: u64, window: Duration) -> Limit {
        Limit::new(Algorithm::SlidingWindow, limit, window, limit)
    }

    /// At most `limit` units in any `window`, exactly (one log entry per unit).
    pub fn sliding_log(limit: u64, window: Duration) -> Limit {
        Limit::new(Algorithm::SlidingLog, limit, window, limit)
    }

    /// A bucket of `capacity` tokens that gets `refill` tokens back every `every`,
    /// continuously (a token every `every / refill`).
    pub fn token_bucket(capacity: u64, refill: u64, every: Duration) -> Limit {
        Limit::new(Algorithm::TokenBucket, capacity, every, refill)
    }

    /// `rate` units per `period`, evenly spaced, with a burst of `rate` units (change it
    /// with [`Limit::burst`]). Any span of one period can pass `burst + rate` units.
    pub fn gcra(rate: u64, period: Duration) -> Limit {
        Limit::new(Algorithm::Gcra, rate, period, rate)
    }

    /// For GCRA and token buckets: how many units may pass at once (the capacity).
    pub fn burst(mut self, burst: u64) -> Limit {
        self.capacity = burst;
        self
    }

    /// Names the limit: the policy name in `RateLimit` headers (default: its key suffix),
    /// and part of its state's keys. Unnamed limits with equal parameters on one key
    /// share state; name them (`"login"`, `"password-reset"`) to keep two purposes with
    /// the same numbers apart. Renaming a limit starts its keys afresh.
    pub fn name(mut self, name: impl Into<String>) -> Limit {
        self.name = Some(name.into());
        self
    }

    /// The name given with [`Limit::name`], if any.
    pub(crate) fn given_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// After a check is denied by this limit, deny every check of that key for `block`
    /// (counted from the denial; the limit's state starts afresh afterwards). A block
    /// shorter than [`Limit::full_window`] therefore admits a new full allowance each time
    /// it ends: more than the limit per window. Use `block >= full_window()` to keep the
    /// limit exact.
    pub fn block_for(mut self, block: Duration) -> Limit {
        self.block = block;
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The limit per window, or the bucket's capacity.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The window, or the period in which [`Limit::rate`] units refill.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Units refilled per window (equal to the capacity for window algorithms).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The block after a denial (zero: none).
    pub fn block(&self) -> Duration {
        self.block
    }

    /// The policy name: the given name, else the key suffix (e.g. `fw60000000_100`).
    pub fn policy_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.suffix())
    }

    /// The key suffix of this limit's state, made of every parameter that decides it:
    /// algorithm code and window in microseconds, capacity, for buckets the rate, and the
    /// block after a denial when there is one (`fw60000000_100`, `gc1000000_20_10`,
    /// `sl60000000_5_b900000000`). Two limits share state only when all of them are
    /// equal: a login limit of 5 per minute never spends an API limit of 1000 per minute
    /// on the same key (issue 18 item 25).
    pub(crate) fn suffix(&self) -> String {
        let mut s = format!(
            "{}{}_{}",
            self.algorithm.code(),
            micros_ceil(self.window),
            self.capacity
        );
        if matches!(self.algorithm, Algorithm::TokenBucket | Algorithm::Gcra) {
            s.push_str(&format!("_{}", self.rate));
        }
        if !self.block.is_zero() {
            s.push_str(&format!("_b{}", micros_ceil(self.block)));
        }
        s
    }

    /// How long the limit takes to refill completely: the window, or capacity intervals.
    pub fn full_window(&self) -> Duration {
        match self.algorithm {
            Algorithm::TokenBucket | Algorithm::Gcra => {
                Duration::from_micros(self.interval_us().saturating_mul(self.capacity))
            }
            _ => self.window,
        }
    }

    /// Microseconds per unit for buckets (rounded up, so the rate is never exceeded), the
    /// window for the others.
    pub(crate) fn interval_us(&self) -> u64 {
        let w = micros_ceil(self.window);
        match self.algorithm {
            Algorithm::TokenBucket | Algorithm::Gcra => w.div_ceil(self.rate.max(1)),
            _ => w,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let what = self.algorithm;
        let bad = |msg: String| Err(Error::InvalidLimit(format!("{what} limit: {msg}")));
        if self.capacity == 0 {
            return bad("the limit (capacity) must be at least 1".into());
        }
        if self.capacity > MAX_CAPACITY {
            return bad(format!(
                "the limit {} is above the largest supported, {MAX_CAPACITY}",
                self.capacity
            ));
        }
        if self.algorithm == Algorithm::SlidingLog && self.capacity > MAX_LOG_CAPACITY {
            return bad(format!(
                "a sliding log keeps one entry per unit; {} is above {MAX_LOG_CAPACITY} \
                 (use a sliding window for large limits)",
                self.capacity
            ));
        }
        if self.window < Duration::from_millis(1) {
            return bad(format!("the window {:?} is shorter than 1 ms", self.window));
        }
        if self.window > MAX_WINDOW || self.block > MAX_WINDOW {
            return bad(format!("windows and blocks are at most {MAX_WINDOW:?}"));
        }
        if matches!(self.algorithm, Algorithm::TokenBucket | Algorithm::Gcra) {
            if self.rate == 0 {
                return bad("the rate must be at least 1 unit per period".into());
            }
            if micros_ceil(self.window) < self.rate {
                return bad(format!(
                    "{} units per {:?} is more than one per microsecond",
                    self.rate, self.window
                ));
            }
            if self.full_window() > MAX_WINDOW {
                return bad(format!(
                    "refilling the burst of {} takes longer than {MAX_WINDOW:?}",
                    self.capacity
                ));
            }
        }
        if let Some(name) = &self.name {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                return bad(format!(
                    "the name {name:?} must be non-empty ASCII letters, digits, `-`, `_`, `.` or `:`"
                ));
            }
        }
        Ok(())
    }
}

/// Whole microseconds, rounded up (saturating): a window or block is never cut short by
/// the script's microsecond clock, and a block under 1 µs still blocks.
pub(crate) fn micros_ceil(d: Duration) -> u64 {
    let us = d.as_micros() + u128::from(!d.subsec_nanos().is_multiple_of(1000));
    u64::try_from(us).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_are_typed_errors() {
        let s = Duration::from_secs(1);
        for bad in [
            Limit::fixed_window(0, s),
            Limit::fixed_window(MAX_CAPACITY + 1, s),
            Limit::sliding_window(10, Duration::ZERO),
            Limit::sliding_window(10, Duration::from_micros(999)),
            Limit::sliding_log(MAX_LOG_CAPACITY + 1, s),
            Limit::fixed_window(10, MAX_WINDOW + Duration::from_secs(1)),
            Limit::fixed_window(10, s).block_for(Duration::from_secs(u64::MAX / 2)),
            Limit::fixed_window(10, s).block_for(Duration::MAX),
            Limit::fixed_window(u64::MAX, s),
            Limit::fixed_window(10, Duration::MAX),
            Limit::sliding_log(u64::MAX, s),
            Limit::gcra(u64::MAX, s),
            Limit::gcra(10, Duration::MAX),
            Limit::gcra(10, s).burst(u64::MAX),
            Limit::token_bucket(10, u64::MAX, s),
            Limit::token_bucket(u64::MAX, 1, s),
            Limit::gcra(0, s),
            Limit::gcra(2_000_000, s),
            Limit::gcra(10, s).burst(0),
            Limit::token_bucket(10, 0, s),
            Limit::gcra(1, Duration::from_secs(3600 * 24 * 365)).burst(10),
            Limit::fixed_window(10, s).name(""),
            Limit::fixed_window(10, s).name("a b"),
            Limit::fixed_window(10, s).name("{x}"),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidLimit(_))),
                "{bad:?} passed"
            );
        }
        assert!(Limit::gcra(1_000_000, s).validate().is_ok());
        assert!(
            Limit::fixed_window(1, Duration::from_millis(1))
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn bucket_intervals_round_up() {
        let l = Limit::gcra(3, Duration::from_secs(1));
        assert_eq!(l.interval_us(), 333_334);
        assert_eq!(l.full_window(), Duration::from_micros(1_000_002));
        let b = Limit::token_bucket(50, 5, Duration::from_secs(1));
        assert_eq!(b.interval_us(), 200_000);
        assert_eq!(b.full_window(), Duration::from_secs(10));
        assert_eq!(b.suffix(), "tb1000000_50_5");
    }

    #[test]
    fn every_parameter_is_part_of_the_key() {
        let s = Duration::from_secs(60);
        let limits = [
            Limit::fixed_window(5, s),
            Limit::fixed_window(1000, s),
            Limit::fixed_window(5, s + Duration::from_micros(1)),
            Limit::fixed_window(5, s).block_for(Duration::from_secs(1)),
            Limit::fixed_window(5, s).block_for(Duration::from_secs(2)),
            Limit::sliding_window(5, s),
            Limit::sliding_log(5, s),
            Limit::gcra(5, s),
            Limit::gcra(5, s).burst(6),
            Limit::token_bucket(5, 5, s),
            Limit::token_bucket(5, 4, s),
        ];
        let suffixes: std::collections::HashSet<String> =
            limits.iter().map(Limit::suffix).collect();
        assert_eq!(suffixes.len(), limits.len(), "{suffixes:?}");
        let state = |l: &Limit, aligned| crate::policy::state_suffix(l, aligned);
        let login = Limit::fixed_window(5, s).name("login");
        let reset = Limit::fixed_window(5, s).name("password-reset");
        let unnamed = Limit::fixed_window(5, s);
        assert_eq!(state(&login, false), "fw60000000_5=login");
        assert_ne!(state(&login, false), state(&reset, false));
        assert_ne!(state(&login, false), state(&unnamed, false));
        // a name cannot mimic the aligned marker or another parameter
        let tricky = Limit::fixed_window(5, s).name("login_a");
        assert_ne!(state(&tricky, false), state(&login, true));
        assert_eq!(state(&login, true), "fw60000000_5_a=login");
        assert_eq!(Limit::fixed_window(100, s).suffix(), "fw60000000_100");
        assert_eq!(
            Limit::sliding_log(5, s)
                .block_for(Duration::from_secs(900))
                .suffix(),
            "sl60000000_5_b900000000"
        );
    }

    #[test]
    fn sub_microsecond_parts_round_up() {
        assert_eq!(micros_ceil(Duration::from_nanos(1)), 1);
        assert_eq!(micros_ceil(Duration::from_nanos(1000)), 1);
        assert_eq!(micros_ceil(Duration::from_nanos(1001)), 2);
        assert_eq!(micros_ceil(Duration::MAX), u64::MAX);
        assert_eq!(micros_ceil(Duration::ZERO), 0);
    }
}
