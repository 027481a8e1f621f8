//! What a storage backend does, and the acquire loop shared by every backend.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::guard::LockGuard;
use crate::{AcquireOptions, Error, Result};

/// The answer to one attempt.
pub(crate) enum Attempt {
    /// Taken, with the resource's new fencing token.
    Acquired { fence: u64 },
    /// Held by another owner for about this long (unknown if `None`).
    Busy { retry_after: Option<Duration> },
    /// A key holds something the lock did not write (see [`Error::Unusable`]); nothing was
    /// taken.
    Unusable { reason: &'static str },
}

impl Attempt {
    /// An acquire script's answer: `(1, fencing token)`, `(0, holder's remaining ttl)`
    /// or `(-1, reason)`.
    pub(crate) fn from_script(status: i64, n: i64) -> Attempt {
        match status {
            1 => Attempt::Acquired {
                fence: u64::try_from(n).unwrap_or(0),
            },
            0 => Attempt::Busy {
                retry_after: u64::try_from(n).ok().map(Duration::from_millis),
            },
            _ => Attempt::Unusable {
                reason: if n == 1 {
                    "the lock key holds a value of another type"
                } else {
                    "the fencing counter cannot be incremented (another type, not an integer, or at its maximum)"
                },
            },
        }
    }

    /// [`Error::Unusable`] for an unusable answer, the attempt otherwise.
    pub(crate) fn checked(self, resource: &str) -> Result<Attempt> {
        match self {
            Attempt::Unusable { reason } => Err(Error::Unusable {
                resource: resource.to_string(),
                reason: reason.to_string(),
            }),
            other => Ok(other),
        }
    }
}

/// The atomic steps a backend provides; all compare the owner token.
#[async_trait]
pub(crate) trait Backend: Send + Sync + fmt::Debug + 'static {
    /// One attempt; rejects unusable resource names with a typed error.
    async fn try_lock(&self, resource: &str, token: &str, ttl: Duration) -> Result<Attempt>;
    /// One attempt of a caller that keeps waiting when busy. The writer side of a
    /// read-write lock records its intent then, so new readers stay out until it is in
    /// (writer preference); the other kinds just try.
    async fn try_lock_waiting(
        &self,
        resource: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Attempt> {
        self.try_lock(resource, token, ttl).await
    }
    /// The waiting caller gave up: drop its intent (an intent also lapses by itself).
    async fn withdraw(&self, _resource: &str, _token: &str) -> Result<()> {
        Ok(())
    }
    async fn extend(&self, resource: &str, token: &str, ttl: Duration) -> Result<bool>;
    async fn release(&self, resource: &str, token: &str) -> Result<bool>;
    /// Remaining TTL while `token` owns the lock.
    async fn remaining(&self, resource: &str, token: &str) -> Result<Option<Duration>>;
    /// Starts listening for releases of `resource`.
    async fn listen(&self, resource: &str) -> Result<Box<dyn Waiter>>;
}

/// Wakes when a release of the resource may have happened (a notification, or a gap in
/// the notification link, after which the waiter must look again).
#[async_trait]
pub(crate) trait Waiter: Send {
    async fn wait(&mut self);
}

/// A random 128-bit owner token, hex-encoded. It only has to be unique among the owners of
/// one resource (it is not a secret: anyone who can write to Redis can delete a lock), so
/// a fast per-thread generator seeded from the OS serves, with no system call per token.
fn new_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

pub(crate) async fn try_acquire(
    backend: &Arc<dyn Backend>,
    resource: &str,
    options: AcquireOptions,
) -> Result<Option<LockGuard>> {
    options.validate()?;
    let token = new_token();
    let sent = Instant::now();
    match backend
        .try_lock(resource, &token, options.ttl)
        .await?
        .checked(resource)?
    {
        Attempt::Acquired { fence } => Ok(Some(LockGuard::new(
            Arc::clone(backend),
            resource,
            token,
            fence,
            sent,
            options,
        ))),
        Attempt::Busy { .. } | Attempt::Unusable { .. } => Ok(None),
    }
}

/// The longest pause between attempts when no notification arrives.
const MAX_FALLBACK: Duration = Duration::from_secs(1);
/// How long a waiting writer's intent keeps new readers out unless renewed: longer than
/// the longest pause between its attempts (the fallback plus its jitter), so it does not
/// lapse while the writer waits; a writer that vanishes keeps readers out this long.
pub(crate) const WRITER_INTENT: Duration = Duration::from_millis(3000);

/// Test hook: a writer intent other than the default (3 s) for the writers that record one
/// while it is set (milliseconds; 0: the default).
#[cfg(feature = "__test-hooks")]
pub static WRITER_INTENT_OVERRIDE_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// How long a waiting writer's intent lasts.
pub(crate) fn writer_intent() -> Duration {
    #[cfg(feature = "__test-hooks")]
    {
        let ms = WRITER_INTENT_OVERRIDE_MS.load(std::sync::atomic::Ordering::SeqCst);
        if ms > 0 {
            return Duration::from_millis(ms);
        }
    }
    WRITER_INTENT
}
const MIN_FALLBACK: Duration = Duration::from_millis(5);

pub(crate) async fn acquire(
    backend: &Arc<dyn Backend>,
    resource: &str,
    options: AcquireOptions,
) -> Result<LockGuard> {
    options.validate()?;
    let token = new_token();
    let start = Instant::now();
    let deadline = start + options.wait;
    let mut waiter: Option<Box<dyn Waiter>> = None;
    let mut listening_failed = false;
    loop {
        let sent = Instant::now();
        let retry_after = match backend
            .try_lock_waiting(resource, &token, options.ttl)
            .await?
            .checked(resource)?
        {
            Attempt::Acquired { fence } => {
                return Ok(LockGuard::new(
                    Arc::clone(backend),
                    resource,
                    token,
                    fence,
                    sent,
                    options,
                ));
            }
            Attempt::Busy { retry_after } => retry_after,
            Attempt::Unusable { .. } => None,
        };
        let now = Instant::now();
        if now >= deadline {
            if let Err(e) = backend.withdraw(resource, &token).await {
                tracing::debug!(error = %e, "could not withdraw a waiting writer's intent; it lapses");
            }
            return Err(Error::WaitTimeout {
                resource: resource.to_string(),
                waited: now - start,
            });
        }
        if waiter.is_none() && !listening_failed {
            // Listen first, then look again: a release between the attempt above and the
            // subscription would otherwise go unnoticed until the fallback timer.
            match backend.listen(resource).await {
                Ok(w) => {
                    waiter = Some(w);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "release notifications unavailable; polling");
                    listening_failed = true;
                }
            }
        }
        // The holder's remaining TTL bounds the wait; jitter spreads competing waiters.
        let base = retry_after
            .unwrap_or(Duration::from_millis(50))
            .clamp(MIN_FALLBACK, MAX_FALLBACK);
        let jitter = base.mul_f64(fastrand::f64() * 0.25);
        let pause = (base + jitter).min(deadline - now);
        match waiter.as_mut() {
            Some(w) => {
                tokio::select! {
                    _ = w.wait() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
    }
}
