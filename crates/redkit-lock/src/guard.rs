//! The guard of a held lock: owner and fencing tokens, extend, release, the watchdog and
//! the `lost` signal.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::{AcquireOptions, Error, Result};

struct LeaseInner {
    resource: String,
    token: String,
    fence: u64,
    /// Cancelled once the lock is known lost, or released.
    lost: CancellationToken,
    /// When this owner can no longer count on holding the lock, by its own clock:
    /// request sent + ttl - drift - safety margin. Pushed forward by every renewal.
    /// With the send time of the renewal it comes from.
    safe_until: Mutex<Renewal>,
}

#[derive(Debug, Clone, Copy)]
struct Renewal {
    sent: Instant,
    until: Instant,
}

impl LeaseInner {
    fn safe_until(&self) -> Instant {
        self.safe_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .until
    }

    /// A renewal sent at `sent` succeeded. Only the latest-sent renewal counts: the
    /// watchdog's and an explicit `extend` with another TTL can be answered in either
    /// order, and the server keeps the TTL of the one it ran last (on one connection, the
    /// one sent last); an earlier one answered late must not push the time back out.
    fn renewed(&self, sent: Instant, options: &AcquireOptions) {
        let until = sent + options.ttl - options.drift() - options.margin();
        let mut last = self.safe_until.lock().unwrap_or_else(|p| p.into_inner());
        if sent >= last.sent {
            *last = Renewal { sent, until };
        }
    }
}

/// Test hook: while set, the watchdog stops after a successful renewal, before it records
/// it, announcing itself on `arrived` and going on after `go`.
#[cfg(feature = "__test-hooks")]
pub static RENEWAL_GATE: Mutex<Option<Arc<RenewalGate>>> = Mutex::new(None);

/// See [`RENEWAL_GATE`].
#[cfg(feature = "__test-hooks")]
#[derive(Debug, Default)]
pub struct RenewalGate {
    /// Notified when the watchdog reached the gate.
    pub arrived: tokio::sync::Notify,
    /// Notify to let it go on.
    pub go: tokio::sync::Notify,
}

/// A cheap, cloneable view of a held lock, for the work done under it: the fencing token
/// to hand to the protected resource, and the `lost` signal.
#[derive(Clone)]
pub struct LockLease {
    inner: Arc<LeaseInner>,
}

impl fmt::Debug for LockLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockLease")
            .field("resource", &self.inner.resource)
            .field("fencing_token", &self.inner.fence)
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LockLease {
    /// The locked resource.
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The fencing token: strictly larger for every later acquisition of the resource.
    pub fn fencing_token(&self) -> u64 {
        self.inner.fence
    }

    /// The random token that identifies this owner.
    pub fn owner_token(&self) -> &str {
        &self.inner.token
    }

    /// Resolves when this owner can no longer count on the lock: renewal said it is gone,
    /// or the time it can be sure of (TTL minus drift and safety margin, from its own
    /// clock) runs out without a successful renewal, or the guard was released. It fires
    /// *before* the server-side TTL ends, so work can stop in time.
    pub async fn lost(&self) {
        let inner = &self.inner;
        loop {
            let until = inner.safe_until();
            tokio::select! {
                _ = inner.lost.cancelled() => return,
                _ = tokio::time::sleep_until(until.into()) => {
                    if inner.safe_until() <= Instant::now() {
                        inner.lost.cancel();
                        return;
                    }
                }
            }
        }
    }

    /// Whether [`LockLease::lost`] has fired (or would fire now).
    pub fn is_lost(&self) -> bool {
        if self.inner.lost.is_cancelled() {
            return true;
        }
        if self.inner.safe_until() <= Instant::now() {
            self.inner.lost.cancel();
            return true;
        }
        false
    }

    /// How long this owner can still count on the lock.
    pub fn safe_for(&self) -> Duration {
        if self.is_lost() {
            return Duration::ZERO;
        }
        self.inner
            .safe_until()
            .saturating_duration_since(Instant::now())
    }
}

/// A held lock. Release it with [`LockGuard::release`] to learn whether it was still
/// held; dropping the guard releases it in the background.
pub struct LockGuard {
    lease: LockLease,
    backend: Arc<dyn Backend>,
    options: AcquireOptions,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("resource", &self.lease.inner.resource)
            .field("fencing_token", &self.lease.inner.fence)
            .field("auto_extend", &self.watchdog.is_some())
            .finish()
    }
}

impl LockGuard {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        resource: &str,
        token: String,
        fence: u64,
        sent: Instant,
        options: AcquireOptions,
    ) -> LockGuard {
        let inner = Arc::new(LeaseInner {
            resource: resource.to_string(),
            token,
            fence,
            lost: CancellationToken::new(),
            safe_until: Mutex::new(Renewal { sent, until: sent }),
        });
        inner.renewed(sent, &options);
        let watchdog = options.auto_extend.then(|| {
            tokio::spawn(watchdog(
                Arc::clone(&backend),
                Arc::clone(&inner),
                options.clone(),
                sent,
            ))
        });
        LockGuard {
            lease: LockLease { inner },
            backend,
            options,
            watchdog,
            released: false,
        }
    }

    /// A cloneable view for the work under the lock.
    pub fn lease(&self) -> LockLease {
        self.lease.clone()
    }

    /// The locked resource.
    pub fn resource(&self) -> &str {
        self.lease.resource()
    }

    /// The fencing token (see [`LockLease::fencing_token`]).
    pub fn fencing_token(&self) -> u64 {
        self.lease.fencing_token()
    }

    /// The owner token.
    pub fn owner_token(&self) -> &str {
        self.lease.owner_token()
    }

    /// See [`LockLease::lost`].
    pub async fn lost(&self) {
        self.lease.lost().await
    }

    /// See [`LockLease::is_lost`].
    pub fn is_lost(&self) -> bool {
        self.lease.is_lost()
    }

    /// Resets the TTL to `ttl` from now. [`Error::NotHeld`] when the lock expired or
    /// belongs to someone else now; the guard is then lost for good.
    pub async fn extend(&self, ttl: Duration) -> Result<()> {
        let mut options = self.options.clone();
        options.ttl = ttl;
        options.validate()?;
        let inner = &self.lease.inner;
        if inner.lost.is_cancelled() {
            return Err(Error::NotHeld {
                resource: inner.resource.clone(),
            });
        }
        let sent = Instant::now();
        if self
            .backend
            .extend(&inner.resource, &inner.token, ttl)
            .await?
        {
            inner.renewed(sent, &options);
            Ok(())
        } else {
            inner.lost.cancel();
            Err(Error::NotHeld {
                resource: inner.resource.clone(),
            })
        }
    }

    /// Asks the server whether this owner still holds the lock.
    pub async fn is_held(&self) -> Result<bool> {
        let inner = &self.lease.inner;
        Ok(self
            .backend
            .remaining(&inner.resource, &inner.token)
            .await?
            .is_some())
    }

    /// Releases the lock: `Ok(true)` when it was still held and is now free, `Ok(false)`
    /// when it had already expired or been taken (nothing is deleted then). Errors are
    /// reported; the lock then expires by its TTL.
    pub async fn release(mut self) -> Result<bool> {
        self.stop();
        let inner = &self.lease.inner;
        let released = self.backend.release(&inner.resource, &inner.token).await;
        // only now: a release future dropped before its call went out (a batch not yet
        // sent skips callers who left) leaves the guard to release on drop, owner-checked
        self.released = true;
        released
    }

    fn stop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        self.lease.inner.lost.cancel();
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop();
        if self.released {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backend = Arc::clone(&self.backend);
        let inner = Arc::clone(&self.lease.inner);
        runtime.spawn(async move {
            if let Err(e) = backend.release(&inner.resource, &inner.token).await {
                tracing::warn!(resource = %inner.resource, error = %e,
                    "background release failed; the lock expires by its ttl");
            }
        });
    }
}

/// Renews every `ttl / 3`. A renewal the server refuses means the lock is gone: `lost`
/// fires at once. Failed renewals (connection trouble) are retried quickly; if none
/// succeeds before the safe time runs out, `lost` fires by itself (see `LockLease::lost`).
async fn watchdog(
    backend: Arc<dyn Backend>,
    inner: Arc<LeaseInner>,
    options: AcquireOptions,
    started: Instant,
) {
    let every = options.ttl / 3;
    let mut pause = every;
    loop {
        tokio::select! {
            _ = inner.lost.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        if let Some(max) = options.max_hold
            && started.elapsed() + options.ttl > max
        {
            tracing::debug!(resource = %inner.resource, "max hold time reached; renewal stops");
            return;
        }
        let sent = Instant::now();
        let limit = inner.safe_until().saturating_duration_since(sent);
        match tokio::time::timeout(
            limit,
            backend.extend(&inner.resource, &inner.token, options.ttl),
        )
        .await
        {
            Ok(Ok(true)) => {
                #[cfg(feature = "__test-hooks")]
                {
                    let gate = RENEWAL_GATE
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    if let Some(gate) = gate {
                        gate.arrived.notify_one();
                        gate.go.notified().await;
                    }
                }
                inner.renewed(sent, &options);
                pause = every;
            }
            Ok(Ok(false)) => {
                tracing::warn!(resource = %inner.resource, "lock lost: renewal refused");
                inner.lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(resource = %inner.resource, error = %e, "lock renewal failed; retrying");
                pause = (every / 4).max(Duration::from_millis(5));
            }
            Err(_) => {
                tracing::warn!(resource = %inner.resource, "lock lost: no renewal in time");
                inner.lost.cancel();
                return;
            }
        }
    }
}
