//! What a backend provides underneath the cache logic, and the L1 coherence state.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use std::future::Future;

use crate::Result;
use crate::envelope::Envelope;
use crate::write::{DeadWrite, Version};

/// A duration in whole milliseconds, at least 1 (Redis refuses `PX 0`).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// One entry to write: the key as the user named it, the encoded envelope and the time
/// the backend keeps it.
#[derive(Debug, Clone)]
pub(crate) struct Put {
    pub(crate) key: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: Duration,
    pub(crate) tags: Vec<String>,
}

/// What became of a loaded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filled {
    /// Written.
    Written,
    /// Not written: the load's lock expired.
    LockLost,
    /// Not written: the entry was written or deleted since the load began.
    Superseded,
}

/// The storage under a cache: Redis, or memory. Keys are the user's keys; the backend
/// maps them into its namespace and current generation.
pub(crate) trait Store: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch on this cache's clock.
    fn now_ms(&self) -> u64;
    /// The entries' bytes, in order (one round trip).
    fn read(&self, keys: &[&str]) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send;
    /// Writes entries and announces them (one round trip per slot).
    fn write(&self, writes: &[Put]) -> impl Future<Output = Result<()>> + Send;
    /// Deletes entries and announces it; how many existed.
    fn remove(&self, keys: &[&str]) -> impl Future<Output = Result<u64>> + Send;
    /// Deletes every entry carrying one of the tags: the keys tagged (to drop from L1)
    /// and how many entries existed.
    fn invalidate_tags(
        &self,
        tags: &[&str],
    ) -> impl Future<Output = Result<(Vec<String>, u64)>> + Send;
    /// Invalidates the whole namespace at once.
    fn clear(&self) -> impl Future<Output = Result<()>> + Send;
    /// A load of the key begins: registers `token`, which any later write or delete of
    /// the key cancels, for `window`; with `lock`, only if the key's load lock is free,
    /// which the load then holds for that long. False: the lock is held by another load.
    fn begin(
        &self,
        key: &str,
        token: &str,
        lock: Option<Duration>,
        window: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Writes a loaded entry only if nothing was written or deleted since the load with
    /// `token` began, and (with `locked`) only while it still holds the lock; releases
    /// both.
    fn fill(
        &self,
        write: &Put,
        token: &str,
        locked: bool,
    ) -> impl Future<Output = Result<Filled>> + Send;
    /// Ends a load that writes nothing: withdraws `token` and releases the lock if it
    /// still holds it.
    fn abandon(
        &self,
        key: &str,
        token: &str,
        locked: bool,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Write-behind: writes entries and appends them to their shards' logs, in one step
    /// per shard.
    fn log_write(&self, writes: &[Put]) -> impl Future<Output = Result<()>> + Send;
    /// Write-behind: deletes entries and logs their removal; how many existed.
    fn log_remove(&self, keys: &[&str]) -> impl Future<Output = Result<u64>> + Send;
    /// Takes a shard's flush lease if it is free, renews it if `token` holds it.
    fn lease(
        &self,
        shard: u16,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Gives a shard's flush lease up if `token` holds it.
    fn release(&self, shard: u16, token: &str) -> impl Future<Output = Result<()>> + Send;
    /// Renews a shard's flush lease if `token` holds it; never takes a lease.
    fn renew(
        &self,
        shard: u16,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// The first `count` records of a shard's log, in version order. The log holds only
    /// records not flushed yet (settling deletes them), so a read changes nothing: a
    /// flusher that lost its lease may read, and what it read stays for the next owner.
    fn read_log(
        &self,
        shard: u16,
        count: usize,
    ) -> impl Future<Output = Result<Vec<crate::Write>>> + Send;
    /// Deletes handled records from the log and keeps the dead ones in the dead letters,
    /// only while `token` holds the shard's lease; false when it does not.
    fn settle(
        &self,
        shard: u16,
        token: &str,
        done: &[Version],
        dead: &[DeadWrite],
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Each shard's log: how many records, the oldest and the newest.
    fn log_state(&self) -> impl Future<Output = Result<Vec<LogState>>> + Send;
    /// Up to `limit` dead writes, oldest first.
    fn dead_writes(&self, limit: usize) -> impl Future<Output = Result<Vec<DeadWrite>>> + Send;
}

/// One shard's write-behind log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogState {
    pub(crate) len: u64,
    pub(crate) first: Option<Version>,
    pub(crate) last: Option<Version>,
}

const STRIPES: usize = 1024;

/// The in-process L1 and what keeps it coherent: a generation per key stripe, bumped by
/// every invalidation before it removes the entry, and an epoch bumped by every clear. A
/// value read from Redis goes into L1 only if neither moved while it was read, so an
/// invalidation that arrives during a read is never undone by that read.
pub(crate) struct Link {
    l1: Option<moka::future::Cache<String, Envelope>>,
    stripes: Box<[AtomicU64]>,
    epoch: AtomicU64,
    up: AtomicBool,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("l1", &self.l1.as_ref().map(|c| c.entry_count()))
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish()
    }
}

/// A point in the invalidation history of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshot(u64, u64);

impl Link {
    /// A link with an L1 of `capacity` entries, each served at most `max_staleness`.
    pub(crate) fn new(l1: Option<(u64, Duration)>) -> Link {
        Link {
            l1: l1.map(|(capacity, ttl)| {
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(ttl)
                    .build()
            }),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }
    }

    fn stripe(&self, key: &str) -> &AtomicU64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    pub(crate) fn snapshot(&self, key: &str) -> Snapshot {
        if self.l1.is_none() {
            return Snapshot(0, 0);
        }
        Snapshot(
            self.epoch.load(Ordering::SeqCst),
            self.stripe(key).load(Ordering::SeqCst),
        )
    }

    pub(crate) async fn get(&self, key: &str) -> Option<Envelope> {
        if !self.up.load(Ordering::SeqCst) {
            return None;
        }
        self.l1.as_ref()?.get(key).await
    }

    /// Inserts what was read at `snap`, unless an invalidation of the key (or a clear)
    /// happened since. Checked again after the insert: an invalidation that raced with it
    /// bumped the stripe first, so one of the two checks sees it.
    pub(crate) async fn insert(&self, key: &str, env: Envelope, snap: Snapshot) {
        let Some(l1) = &self.l1 else { return };
        if !self.up.load(Ordering::SeqCst) || self.snapshot(key) != snap {
            return;
        }
        l1.insert(key.to_string(), env).await;
        if self.snapshot(key) != snap || !self.up.load(Ordering::SeqCst) {
            l1.invalidate(key).await;
        }
    }

    pub(crate) async fn invalidate(&self, key: &str) {
        self.stripe(key).fetch_add(1, Ordering::SeqCst);
        if let Some(l1) = &self.l1 {
            l1.invalidate(key).await;
        }
    }

    pub(crate) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(l1) = &self.l1 {
            l1.invalidate_all();
        }
    }

    /// The invalidation link is down (nothing in L1 is served or kept) or back.
    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        self.invalidate_all();
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    pub(crate) fn l1_len(&self) -> u64 {
        self.l1.as_ref().map_or(0, |c| c.entry_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Kind;
    use bytes::Bytes;

    fn env(v: &'static [u8]) -> Envelope {
        Envelope {
            kind: Kind::Value,
            fresh_until: u64::MAX,
            stale_until: u64::MAX,
            delta_ms: 0,
            payload: Bytes::from_static(v),
        }
    }

    #[tokio::test]
    async fn a_read_that_raced_with_an_invalidation_stays_out_of_l1() {
        let link = Link::new(Some((100, Duration::from_secs(60))));
        // read started, then the key was invalidated: the read's value is not kept
        let snap = link.snapshot("k");
        link.invalidate("k").await;
        link.insert("k", env(b"old"), snap).await;
        assert_eq!(link.get("k").await, None);
        // a clear does the same for every key
        let snap = link.snapshot("k");
        link.invalidate_all();
        link.insert("k", env(b"old"), snap).await;
        assert_eq!(link.get("k").await, None);
        // other keys' invalidations do not block it (unless they share a stripe)
        let snap = link.snapshot("k");
        link.invalidate("other").await;
        link.insert("k", env(b"new"), snap).await;
        if link.snapshot("k") == snap {
            assert_eq!(link.get("k").await, Some(env(b"new")));
        }
        // while the link is down nothing is served or kept
        link.set_up(false);
        assert_eq!(link.get("k").await, None);
        let snap = link.snapshot("k");
        link.insert("k", env(b"x"), snap).await;
        link.set_up(true);
        assert_eq!(link.get("k").await, None);
    }
}
