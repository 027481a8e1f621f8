#![doc = include_str!("../README.md")]

mod ack;
mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod fence;
mod guard;
mod memory;
mod redis;
#[cfg(feature = "redlock")]
mod redlock;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

pub use fence::{FenceGate, FencedValue};
pub use guard::{LockGuard, LockLease};
pub use memory::{MemoryLock, MemoryLockBuilder};
pub use redis::{RedisLock, RedisLockBuilder};
#[cfg(feature = "redlock")]
pub use redlock::{Redlock, RedlockBuilder};

/// Pause points and overrides for this crate's own tests (feature `__test-hooks`).
#[cfg(feature = "__test-hooks")]
#[doc(hidden)]
pub mod __test_hooks {
    pub use crate::backend::WRITER_INTENT_OVERRIDE_MS;
    pub use crate::guard::{RENEWAL_GATE, RenewalGate};
}

/// What can go wrong with a lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Redis, key or configuration trouble (see [`redkit_core::Error`]).
    #[error(transparent)]
    Core(#[from] redkit_core::Error),
    /// An option is out of range (zero TTL, safety margin longer than the TTL, ...).
    #[error("invalid lock option: {0}")]
    InvalidArgument(String),
    /// [`Lock::acquire`] waited as long as allowed.
    #[error("lock `{resource}` not acquired within {waited:?}")]
    WaitTimeout {
        /// The resource.
        resource: String,
        /// How long it waited.
        waited: Duration,
    },
    /// This owner no longer holds the lock: it expired, or was lost and taken by another.
    #[error("lock `{resource}` is no longer held by this owner")]
    NotHeld {
        /// The resource.
        resource: String,
    },
    /// A key of the resource holds something the lock did not write there (a value of
    /// another type at the lock key, a fencing counter that is not an integer or is at its
    /// maximum). Nothing is held after this error: the attempt was undone on the server.
    #[error("lock `{resource}` cannot be used: {reason}")]
    Unusable {
        /// The resource (or group).
        resource: String,
        /// Which key is wrong.
        reason: String,
    },
    /// The lock was acquired but fewer replicas than asked acknowledged it in time (see
    /// [`RedisLockBuilder::wait_for_replicas`]); it was released again, so nothing is held.
    #[error("lock `{resource}`: {acked} of {wanted} replicas acknowledged the acquisition in time")]
    NotReplicated {
        /// The resource.
        resource: String,
        /// How many replicas (or, with `WAITAOF`, local and replica fsyncs) were asked for.
        wanted: u32,
        /// How many acknowledged.
        acked: u32,
    },
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether trying again later may succeed (connection trouble, timeouts, a lock that
    /// was busy for the whole wait).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Core(e) => e.is_retryable(),
            Error::WaitTimeout { .. } | Error::NotReplicated { .. } => true,
            _ => false,
        }
    }
}

/// How to acquire a lock: TTL, how long to wait, and whether a watchdog keeps it.
///
/// ```
/// use redkit_lock::AcquireOptions;
/// use std::time::Duration;
/// let opts = AcquireOptions::new(Duration::from_secs(10))
///     .wait(Duration::from_secs(3))                 // give up after 3 s
///     .auto_extend(true)                            // renew every ttl/3 while held
///     .max_hold(Duration::from_secs(60));           // but never hold longer than this
/// assert_eq!(opts.ttl, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AcquireOptions {
    /// How long the lock lives without renewal; enforced by the server.
    pub ttl: Duration,
    /// How long [`Lock::acquire`] may wait for a busy lock (zero: one attempt).
    pub wait: Duration,
    /// Renew the lock every `ttl / 3` while the guard lives.
    pub auto_extend: bool,
    /// With `auto_extend`, stop renewing once the lock has been held this long.
    pub max_hold: Option<Duration>,
    /// How long before the computed expiry [`LockGuard::lost`] fires. Default `ttl / 10`
    /// (at least 5 ms).
    pub safety_margin: Option<Duration>,
}

impl AcquireOptions {
    /// One attempt, no watchdog.
    pub fn new(ttl: Duration) -> Self {
        AcquireOptions {
            ttl,
            wait: Duration::ZERO,
            auto_extend: false,
            max_hold: None,
            safety_margin: None,
        }
    }

    /// Wait up to this long for a busy lock.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Keep the lock alive with a watchdog while the guard lives.
    pub fn auto_extend(mut self, on: bool) -> Self {
        self.auto_extend = on;
        self
    }

    /// Cap the total hold time of an auto-extended lock.
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }

    /// How long before the computed expiry the guard reports the lock lost.
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = Some(margin);
        self
    }

    /// The clock drift allowance subtracted from the TTL (Redlock's 1% + 2 ms).
    pub(crate) fn drift(&self) -> Duration {
        self.ttl / 100 + Duration::from_millis(2)
    }

    pub(crate) fn margin(&self) -> Duration {
        self.safety_margin
            .unwrap_or_else(|| (self.ttl / 10).max(Duration::from_millis(5)))
    }

    /// Checks the options; a TTL too short to leave any safe time is an error, and so is
    /// any duration longer than [`MAX_DURATION`] (100 years), which no server-side expiry,
    /// Lua number or `Instant` arithmetic has to carry.
    pub fn validate(&self) -> Result<()> {
        if self.ttl.is_zero() {
            return Err(Error::InvalidArgument(
                "ttl must be greater than zero".into(),
            ));
        }
        check_duration("ttl", self.ttl)?;
        check_duration("wait", self.wait)?;
        if let Some(m) = self.safety_margin {
            check_duration("safety_margin", m)?;
        }
        if let Some(m) = self.max_hold {
            check_duration("max_hold", m)?;
        }
        // both bounded by MAX_DURATION above, so the sum cannot overflow; checked anyway
        let unsafe_part = self.drift().checked_add(self.margin());
        if unsafe_part.is_none_or(|u| u >= self.ttl) {
            return Err(Error::InvalidArgument(format!(
                "ttl {:?} leaves no safe time after drift ({:?}) and safety margin ({:?})",
                self.ttl,
                self.drift(),
                self.margin()
            )));
        }
        if self.max_hold.is_some_and(|m| m.is_zero()) {
            return Err(Error::InvalidArgument(
                "max_hold must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// The longest duration any lock option takes: 100 years. A TTL beyond it would overflow
/// the server's expiry arithmetic (`SET ... PX` refuses `now + ttl` past `i64::MAX` ms)
/// or lose precision as a Lua number; a longer wait or hold is no longer a bound.
/// Anything longer is [`Error::InvalidArgument`], before anything is sent.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// [`Error::InvalidArgument`] when `value` is longer than [`MAX_DURATION`].
pub(crate) fn check_duration(what: &str, value: Duration) -> Result<()> {
    if value > MAX_DURATION {
        return Err(Error::InvalidArgument(format!(
            "{what} {value:?} is longer than the longest supported duration ({} years)",
            MAX_DURATION.as_secs() / (365 * 24 * 3600)
        )));
    }
    Ok(())
}

/// A distributed mutual-exclusion lock. Object safe: `Arc<dyn Lock>` works.
///
/// Every acquisition gets a random owner token (only that owner can extend or release)
/// and a fencing token that grows with each acquisition of the resource, so a protected
/// resource can reject a holder whose lock expired (see [`FencedValue`]).
#[async_trait]
pub trait Lock: Send + Sync + fmt::Debug {
    /// One attempt: the guard, or `None` when another owner holds the lock.
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>>;

    /// Waits up to `options.wait` for the lock, woken by release notifications (with a
    /// timed fallback), then fails with [`Error::WaitTimeout`]. Cancel by dropping the
    /// future.
    async fn acquire(&self, resource: &str, options: AcquireOptions) -> Result<LockGuard>;
}

/// All-or-none locks over several resources of one group. The group is the hash tag, so
/// every resource of a group lives on one cluster slot; two holds conflict when they share
/// a resource of the same group.
///
/// ```no_run
/// # async fn run(locks: redkit_lock::RedisLock) -> redkit_lock::Result<()> {
/// use redkit_lock::{AcquireOptions, LockAll};
/// use std::time::Duration;
/// // move money between two accounts: both or neither
/// let guard = locks
///     .acquire_all("bank", &["account:1", "account:2"], AcquireOptions::new(Duration::from_secs(5)))
///     .await?;
/// # Ok(()) }
/// ```
#[async_trait]
pub trait LockAll: Lock {
    /// One attempt on every resource at once: a guard over all of them, or `None` when
    /// any is held.
    async fn try_acquire_all(
        &self,
        group: &str,
        resources: &[&str],
        ttl: Duration,
    ) -> Result<Option<LockGuard>>;

    /// Waits up to `options.wait` until every resource is free at once.
    async fn acquire_all(
        &self,
        group: &str,
        resources: &[&str],
        options: AcquireOptions,
    ) -> Result<LockGuard>;
}

/// Conveniences for every [`Lock`].
#[async_trait]
pub trait LockExt: Lock {
    /// Acquires, runs `work` with a [`LockLease`], and releases. If the lock is lost while
    /// `work` runs (renewal failed, TTL about to run out), `work` is dropped at once and the
    /// result is [`Error::NotHeld`], so nothing continues without the lock.
    async fn with_lock<F, Fut, T>(
        &self,
        resource: &str,
        options: AcquireOptions,
        work: F,
    ) -> Result<T>
    where
        F: FnOnce(LockLease) -> Fut + Send,
        Fut: Future<Output = T> + Send,
        T: Send,
    {
        let guard = self.acquire(resource, options).await?;
        let lease = guard.lease();
        let outcome = tokio::select! {
            out = work(lease.clone()) => Ok(out),
            _ = lease.lost() => Err(Error::NotHeld { resource: resource.to_string() }),
        };
        match guard.release().await {
            Ok(_) => outcome,
            Err(e) => match outcome {
                Ok(v) => {
                    tracing::warn!(error = %e, "release after with_lock failed; the lock expires by its ttl");
                    Ok(v)
                }
                Err(lost) => Err(lost),
            },
        }
    }
}

impl<L: Lock + ?Sized> LockExt for L {}
