//! Fencing: how a protected resource rejects a holder whose lock expired.
//!
//! A lock with a TTL cannot stop a holder that paused (GC, swap, a slow disk) past its
//! TTL from writing after a new holder took over. Fencing tokens can: every acquisition
//! gets a larger token, and the resource refuses a holder once a later token exists.
//!
//! Comparing a write's token with the largest token *written* so far is not enough for a
//! read-modify-write: holder A (token 7) reads, pauses past its TTL; B (token 8) acquires
//! and reads the same value; A wakes and writes — accepted, since B has not written yet —
//! then B writes: A's update is lost. So [`FencedValue`] compares with the largest token
//! *issued* (the lock's own counter, read in the same script), and [`FenceGate`] with the
//! largest token that *entered* (read or wrote) the resource.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use redkit_core::{Key, Keyspace, Redis, Script};

use crate::{Error, RedisLock, Result};

static FENCE_SET: LazyLock<Script> =
    LazyLock::new(|| Script::new("fence_set", include_str!("../lua/fence_set.lua")));

/// A value in Redis, next to a lock, that accepts a write only from the newest holder of
/// that lock: the write's fencing token must be the highest token the lock has *issued*
/// for the resource, checked in one script against the lock's own fencing counter (same
/// hash slot). Once another holder has acquired the lock, an older holder's writes are
/// refused even before the new holder writes, so a read-modify-write done under the lock
/// with [`FencedValue::read`] and [`FencedValue::write`] cannot lose an update
/// (`tests/fencing.rs`, on a standalone server and a cluster).
///
/// The same holder may write several times. The value follows the lock's kind: for a
/// read-write lock or a semaphore the newest acquisition of any kind (a reader, a permit)
/// is the only one that may write. Redlock has no single counter and is not supported.
///
/// ```no_run
/// # async fn run(locks: redkit_lock::RedisLock, guard: redkit_lock::LockGuard) -> redkit_lock::Result<()> {
/// use redkit_lock::FencedValue;
/// let invoices = FencedValue::new(&locks)?;
/// if !invoices.write("invoice:7", guard.fencing_token(), b"paid").await? {
///     // another holder acquired the lock since this one: its lock had expired
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FencedValue {
    redis: Redis,
    /// The lock kind's namespace: the value is `<ns>:{name}:fenced`, the counter
    /// `<ns>:{name}:fence`.
    ns: Keyspace,
}

impl FencedValue {
    /// Values fenced by the locks of `locks` (a mutex, or the read-write or semaphore view
    /// it is), stored under `<prefix>:<kind>:{resource}:fenced`.
    pub fn new(locks: &RedisLock) -> Result<Self> {
        Ok(FencedValue {
            redis: locks.handle().clone(),
            ns: locks.kind_namespace()?,
        })
    }

    /// Values fenced by the all-or-none group locks of `locks`
    /// ([`LockAll`](crate::LockAll)), one per group, under `<prefix>:multi:{group}:fenced`.
    pub fn for_groups(locks: &RedisLock) -> Result<Self> {
        Ok(FencedValue {
            redis: locks.handle().clone(),
            ns: locks.group_namespace()?,
        })
    }

    fn keys(&self, name: &str) -> Result<(Key, Key)> {
        let base = self.ns.tagged(name)?;
        Ok((base.child("fenced")?, base.child("fence")?))
    }

    /// Writes `value` if `token` is the highest fencing token issued for `name` (no holder
    /// acquired the lock after this one). Returns whether it was written.
    ///
    /// When the lock's counter is behind `token` or behind the token of the stored value
    /// (the counter was lost: evicted, or a restart or failover without it), the write is
    /// refused too and the counter is raised past both, so the next acquisition gets a
    /// token above every token this value has seen.
    pub async fn write(&self, name: &str, token: u64, value: &[u8]) -> Result<bool> {
        if token == 0 || token > i64::MAX as u64 {
            return Err(Error::InvalidArgument(format!(
                "fencing token {token} was never issued (tokens run from 1 to 2^63-1)"
            )));
        }
        let (key, fence) = self.keys(name)?;
        let written: i64 = FENCE_SET
            .call()
            .key(&key)
            .key(&fence)
            .arg(token)
            .arg(value)
            .invoke(&self.redis)
            .await?;
        if written == -1 {
            tracing::warn!(
                resource = name,
                token,
                "the fencing counter was behind a token in use (lost by eviction, restart or failover); it was raised and the write refused"
            );
        }
        Ok(written == 1)
    }

    /// The stored value and the token that wrote it.
    pub async fn read(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>> {
        let (key, _) = self.keys(name)?;
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

/// The in-process form of the check, for resources that live in memory: a holder
/// [`enter`](FenceGate::enter)s with its token before it reads, which raises the gate's
/// floor; a write is [`admit`](FenceGate::admit)ted only with a token at or above the
/// floor. An older holder is then refused as soon as a newer one has entered, even if
/// the newer one has not written yet, so a read-modify-write cannot lose an update.
///
/// ```
/// use redkit_lock::FenceGate;
/// let gate = FenceGate::default();
/// assert!(gate.enter(5));    // holder 5 reads
/// assert!(gate.enter(6));    // holder 6 took over (5's lock expired) and reads
/// assert!(!gate.admit(5));   // 5 wakes up and writes: refused, 6 is in
/// assert!(gate.admit(6));
/// assert!(gate.admit(6));    // the same holder may write again
/// assert!(!gate.enter(5));   // and 5 cannot even read any more
/// ```
#[derive(Debug, Default)]
pub struct FenceGate {
    highest: AtomicU64,
}

impl FenceGate {
    /// A holder with `token` starts working on the resource (call it before reading):
    /// raises the floor to `token`. `false` (and no change) when a newer holder already
    /// entered or wrote: this holder's lock has expired.
    pub fn enter(&self, token: u64) -> bool {
        self.raise(token)
    }

    /// Admits a write with `token` if no newer holder has entered or written; raises the
    /// floor to `token`.
    pub fn admit(&self, token: u64) -> bool {
        self.raise(token)
    }

    fn raise(&self, token: u64) -> bool {
        self.highest
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |seen| {
                (token >= seen).then_some(token)
            })
            .is_ok()
    }

    /// The largest token that entered or wrote so far (0 when none).
    pub fn highest(&self) -> u64 {
        self.highest.load(Ordering::Acquire)
    }
}
