//! Fencing: how a protected resource rejects a holder whose lock expired.
//!
//! A lock with a TTL cannot stop a holder that paused (GC, swap, a slow disk) past its
//! TTL from writing after a new holder took over. Fencing tokens can: every acquisition
//! gets a larger token, and the resource refuses any write whose token is not larger than
//! the largest it has accepted.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use redkit_core::{Keyspace, Redis, Script};

use crate::Result;

static FENCE_SET: LazyLock<Script> =
    LazyLock::new(|| Script::new("fence_set", include_str!("../lua/fence_set.lua")));

/// A value in Redis that accepts a write only with a fencing token larger than every
/// token it accepted before (one atomic script).
///
/// ```no_run
/// # async fn run(redis: redkit_core::Redis, guard: redkit_lock::LockGuard) -> redkit_lock::Result<()> {
/// use redkit_lock::FencedValue;
/// let invoices = FencedValue::new(redis, "billing")?;
/// if !invoices.write("invoice:7", guard.fencing_token(), b"paid").await? {
///     // a newer holder already wrote: this holder's lock had expired
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FencedValue {
    redis: Redis,
    keys: Keyspace,
}

impl FencedValue {
    /// Values stored under `<prefix>:fenced:{name}`.
    pub fn new(redis: Redis, prefix: &str) -> Result<Self> {
        Ok(FencedValue {
            redis,
            keys: Keyspace::new(prefix)?.child("fenced")?,
        })
    }

    /// Writes `value` if `token` is larger than every token accepted for `name` so far.
    /// Returns whether it was written.
    pub async fn write(&self, name: &str, token: u64, value: &[u8]) -> Result<bool> {
        let key = self.keys.tagged(name)?;
        let written: i64 = FENCE_SET
            .call()
            .key(&key)
            .arg(token)
            .arg(value)
            .invoke(&self.redis)
            .await?;
        Ok(written == 1)
    }

    /// The stored value and the token that wrote it.
    pub async fn read(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let key = self.keys.tagged(name)?;
        let (token, value): (Option<u64>, Option<Vec<u8>>) = self
            .redis
            .query(
                redkit_core::redis::cmd("HMGET")
                    .arg(&key)
                    .arg("token")
                    .arg("value"),
            )
            .await?;
        Ok(token.zip(value))
    }
}

/// The in-process form of the same check, for resources that live in memory: admits a
/// token only if it is larger than every token admitted before.
///
/// ```
/// use redkit_lock::FenceGate;
/// let gate = FenceGate::default();
/// assert!(gate.admit(5));
/// assert!(!gate.admit(4));   // an older holder
/// assert!(!gate.admit(5));   // the same token twice
/// assert!(gate.admit(6));
/// ```
#[derive(Debug, Default)]
pub struct FenceGate {
    highest: AtomicU64,
}

impl FenceGate {
    /// Admits `token` if it is larger than every token admitted so far.
    pub fn admit(&self, token: u64) -> bool {
        self.highest
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seen| {
                (token > seen).then_some(token)
            })
            .is_ok()
    }

    /// The largest token admitted so far (0 when none).
    pub fn highest(&self) -> u64 {
        self.highest.load(Ordering::Acquire)
    }
}
