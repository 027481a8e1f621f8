//! [`RedisLock`]: the lock on Redis, one Lua script per atomic step.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Coalescer, Key, Keyspace, Redis, Script, Subscription};
use tracing::Instrument;

use crate::ack::{Ack, Acked};
use crate::backend::{self, Attempt, Backend, Waiter};
use crate::{AcquireOptions, Lock, LockGuard, Result};

static ACQUIRE_BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new("acquire_batch", include_str!("../lua/acquire_batch.lua")));
static RELEASE_BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new("release_batch", include_str!("../lua/release_batch.lua")));
static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new("acquire", include_str!("../lua/acquire.lua")));
static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new("extend", include_str!("../lua/extend.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("release", include_str!("../lua/release.lua")));
static HELD: LazyLock<Script> =
    LazyLock::new(|| Script::new("held", include_str!("../lua/held.lua")));
static WRITE_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new("write_acquire", include_str!("../lua/write_acquire.lua")));
static SHARED_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new("shared_acquire", include_str!("../lua/shared_acquire.lua")));
static SHARED_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new("shared_extend", include_str!("../lua/shared_extend.lua")));
static SHARED_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("shared_release", include_str!("../lua/shared_release.lua")));
static SHARED_HELD: LazyLock<Script> =
    LazyLock::new(|| Script::new("shared_held", include_str!("../lua/shared_held.lua")));

/// Locks on Redis (standalone, cluster or sentinel).
///
/// A `RedisLock` is a mutex; [`RedisLock::read`] and [`RedisLock::write`] are the two
/// sides of a read-write lock, and [`RedisLock::semaphore`] a counting semaphore — all
/// with the same guard, fencing tokens, watchdog and notified waiting.
///
/// Keys for resource `r` under prefix `p`, each kind on one hash tag:
/// mutex `p:lock:{r}` (owner token, TTL) and `p:lock:{r}:fence`;
/// read-write `p:rw:{r}:writer`, `p:rw:{r}:readers` (sorted set by expiry), `p:rw:{r}:fence`;
/// semaphore `p:sem:{r}:holders` (sorted set by expiry), `p:sem:{r}:fence`.
/// Releases publish on `<lock key or p:rw:{r} or p:sem:{r}>:released`.
#[derive(Debug, Clone)]
pub struct RedisLock {
    redis: Redis,
    root: Keyspace,
    rw: Keyspace,
    sem: Keyspace,
    notify: bool,
    /// Which kind of hold this handle takes (mutex, reader, writer, permits).
    kind: Kind,
    /// What an acquisition waits for before it counts.
    ack: Option<Ack>,
    backend: Arc<dyn Backend>,
}

/// Builds a [`RedisLock`].
#[derive(Debug)]
pub struct RedisLockBuilder {
    redis: Redis,
    prefix: String,
    batching: bool,
    notify: bool,
    allow_eviction: bool,
    ack: Option<Ack>,
}

impl RedisLock {
    /// A builder; the key prefix defaults to `redkit`.
    pub fn builder(redis: Redis) -> RedisLockBuilder {
        RedisLockBuilder {
            redis,
            prefix: "redkit".to_string(),
            batching: true,
            notify: true,
            allow_eviction: false,
            ack: None,
        }
    }

    fn sibling(&self, kind: Kind) -> RedisLock {
        let ns = match kind {
            Kind::Read | Kind::Write => self.rw.clone(),
            _ => self.sem.clone(),
        };
        RedisLock {
            backend: Arc::new(RedisBackend {
                redis: self.redis.clone(),
                ns,
                kind,
                batches: None,
                notify: self.notify,
                ack: self.ack,
            }),
            kind,
            ..self.clone()
        }
    }

    /// The shared side of a read-write lock: any number of readers at once, none while a
    /// writer holds the resource.
    pub fn read(&self) -> RedisLock {
        self.sibling(Kind::Read)
    }

    /// The exclusive side of a read-write lock: taken only when no reader and no writer
    /// holds the resource.
    pub fn write(&self) -> RedisLock {
        self.sibling(Kind::Write)
    }

    /// A counting semaphore: at most `permits` holders of a resource at once, each permit
    /// expiring with its TTL unless extended. Every user of one resource must pass the same
    /// `permits`.
    pub fn semaphore(&self, permits: u32) -> Result<RedisLock> {
        Ok(self.sibling(Kind::semaphore(permits)?))
    }

    /// The namespace of this handle's kind (`p:lock`, `p:rw`, `p:sem`), whose
    /// `<ns>:{resource}:fence` is the resource's fencing counter.
    pub(crate) fn kind_namespace(&self) -> Result<Keyspace> {
        namespace(&self.root, self.kind)
    }

    /// The namespace of all-or-none groups (`p:multi`), whose `<ns>:{group}:fence` is the
    /// group's fencing counter.
    pub(crate) fn group_namespace(&self) -> Result<Keyspace> {
        Ok(self.root.child("multi")?)
    }

    pub(crate) fn handle(&self) -> &Redis {
        &self.redis
    }
}

impl RedisLockBuilder {
    /// The key prefix (`<prefix>:lock:{resource}`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Coalesce concurrent acquire and release calls of this handle into one script call
    /// per batch (default on). Whatever queues while earlier batches are in flight goes
    /// out together; an idle caller never waits. Off sends one script call per call.
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// Whether waiters subscribe to release notifications (default on). Off, they wake
    /// only on the timed fallback (the holder's remaining TTL, at most 1 s, plus jitter):
    /// for ACL users without pub/sub permission.
    pub fn notifications(mut self, on: bool) -> Self {
        self.notify = on;
        self
    }

    /// Accept a server whose `maxmemory-policy` may evict keys (default: refused). Under
    /// `volatile-*` a held lock (a key with an expiry) can be evicted and taken by a second
    /// caller while the first still holds it; under `allkeys-*` the fence counter can be
    /// evicted too and tokens start again. Only for servers that never reach `maxmemory`.
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// Count an acquisition only once `replicas` replicas acknowledged it (`WAIT replicas
    /// timeout`, sent in one pipeline with the acquire script on a dedicated connection).
    /// When fewer acknowledge within `timeout`, the hold is released again and the call
    /// fails with [`Error::NotReplicated`](crate::Error::NotReplicated) (retryable). This
    /// narrows, but does not close, the window in which a failover loses a lock: a replica
    /// that acknowledged may still not be the one promoted, and extensions and releases are
    /// not waited for. Acknowledged acquisitions are not coalesced; each costs a round trip
    /// to the replicas (see the README for the measured cost). `replicas` must be at least 1
    /// and `timeout` at least 1 ms (`WAIT` with 0 would block for ever); the timeout also
    /// has to be shorter than every TTL used, else the acquisition is refused.
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.ack = Some(Ack::Replicas { replicas, timeout });
        self
    }

    /// Count an acquisition only once it is in the append-only file of the primary (when
    /// `local`) and of `replicas` replicas (`WAITAOF`, Redis 7.2 and later; on an older
    /// server [`build`](Self::build) fails with `UnsupportedServer`). Otherwise as
    /// [`wait_for_replicas`](Self::wait_for_replicas). `local` needs `appendonly yes` on
    /// the primary, or every acquisition fails.
    pub fn wait_for_aof(mut self, local: bool, replicas: u32, timeout: Duration) -> Self {
        self.ack = Some(Ack::Aof {
            local,
            replicas,
            timeout,
        });
        self
    }

    /// Checks the prefix and the server's eviction policy (see
    /// [`allow_eviction`](Self::allow_eviction)) and builds the lock.
    pub fn build(self) -> Result<RedisLock> {
        let root = Keyspace::new(&self.prefix)?;
        let ack = self.ack.map(|a| a.check(&self.redis)).transpose()?;
        if !self.allow_eviction {
            self.redis.ensure_no_eviction(
                "lock",
                "a second caller can take a lock that is still held, and fencing tokens can \
                 start again",
            )?;
        }
        Ok(RedisLock {
            redis: self.redis.clone(),
            root: root.clone(),
            rw: namespace(&root, Kind::Read)?,
            sem: namespace(&root, Kind::Permits(1))?,
            notify: self.notify,
            kind: Kind::Mutex,
            ack,
            backend: Arc::new(
                RedisBackend::mutex(self.redis, &root, self.batching, self.notify)?.acked(ack),
            ),
        })
    }
}

/// Which kind of hold a backend takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Mutex,
    Read,
    Write,
    Permits(u32),
}

impl Kind {
    /// A semaphore of `permits` (at least one).
    pub(crate) fn semaphore(permits: u32) -> Result<Kind> {
        if permits == 0 {
            return Err(crate::Error::InvalidArgument(
                "a semaphore needs at least one permit".into(),
            ));
        }
        Ok(Kind::Permits(permits))
    }

    pub(crate) fn exclusive(self) -> bool {
        matches!(self, Kind::Mutex | Kind::Write)
    }
}

#[derive(Debug)]
pub(crate) struct RedisBackend {
    redis: Redis,
    /// The kind's namespace (`p:lock`, `p:rw`, `p:sem`).
    ns: Keyspace,
    kind: Kind,
    /// Coalesced acquire and release calls (mutexes only).
    batches: Option<Arc<Batches>>,
    /// Whether waiters subscribe to release notifications (else they poll).
    notify: bool,
    /// What an acquisition waits for before it counts (acknowledged acquisitions are not
    /// batched).
    ack: Option<Ack>,
}

impl RedisBackend {
    /// A mutex backend on one server (Redlock uses one per node).
    pub(crate) fn mutex(
        redis: Redis,
        root: &Keyspace,
        batching: bool,
        notify: bool,
    ) -> Result<RedisBackend> {
        Ok(RedisBackend {
            batches: batching.then(|| Arc::new(Batches::new(&redis))),
            notify,
            redis,
            ns: namespace(root, Kind::Mutex)?,
            kind: Kind::Mutex,
            ack: None,
        })
    }

    /// Acquisitions wait for `ack` before they count.
    pub(crate) fn acked(mut self, ack: Option<Ack>) -> RedisBackend {
        self.ack = ack;
        self
    }
}

/// How many requests one batch script decides at most.
const MAX_BATCH: usize = 128;
/// How many batches may be in flight at once.
const MAX_IN_FLIGHT: usize = 2;

struct AcquireReq {
    lock: Key,
    fence: Key,
    token: String,
    ttl_ms: u64,
}

struct ReleaseReq {
    lock: Key,
    token: String,
    channel: String,
}

/// What a batched acquisition answers: the attempt, and for a lock taken, what releasing
/// it needs (the answer of a caller who dropped its future goes to the orphan handler,
/// which releases it).
type AcquireAnswer = (redkit_core::Result<Attempt>, Option<Held>);

/// A lock taken by a batched acquisition.
struct Held {
    lock: Key,
    token: String,
}

/// Concurrent acquire and release calls of one lock handle, coalesced into one script
/// call per batch (per hash slot on a cluster). Every request is answered on its own: one
/// slot's failure fails only the callers of that slot. A caller that dropped its future
/// before its batch went out is not sent; one that dropped it after has the lock taken
/// for it released at once (the orphan handler). A caller whose slot's call failed gets
/// the error, and an owner-checked release follows on the same connection, in case the
/// call ran on the server although its answer was lost.
pub(crate) struct Batches {
    acquire: Coalescer<AcquireReq, AcquireAnswer>,
    release: Coalescer<ReleaseReq, redkit_core::Result<bool>>,
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches").finish_non_exhaustive()
    }
}

/// Releases `token`'s hold in the background with `script` (one of the release scripts:
/// owner-checked, so a no-op when `token` holds nothing). Needs a tokio runtime; without
/// one the hold expires by its TTL.
pub(crate) fn release_in_background(
    redis: &Redis,
    script: &'static Script,
    keys: Vec<Key>,
    token: String,
    channel: String,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let redis = redis.clone();
    runtime.spawn(async move {
        let mut call = script.call();
        for k in &keys {
            call = call.key(k);
        }
        let released: redkit_core::Result<i64> =
            call.arg(&token).arg(&channel).invoke(&redis).await;
        if let Err(e) = released {
            tracing::warn!(error = %e,
                "release of a hold whose caller is gone failed; it expires by its ttl");
        }
    });
}

/// Releases a hold in the background when dropped before [`UndoOnDrop::disarm`]: an
/// acquire future dropped while its script call is under way (sent, or about to be) may
/// leave a hold that nobody has a guard for. The release goes out on the same connection
/// after the acquisition, so it runs after it on the server.
struct UndoOnDrop<'a> {
    redis: &'a Redis,
    script: &'static Script,
    keys: &'a [&'a Key],
    token: &'a str,
    channel: &'a str,
    armed: bool,
}

impl UndoOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for UndoOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            release_in_background(
                self.redis,
                self.script,
                self.keys.iter().map(|k| (*k).clone()).collect(),
                self.token.to_string(),
                self.channel.to_string(),
            );
        }
    }
}

impl Batches {
    fn new(redis: &Redis) -> Batches {
        let r = redis.clone();
        let orphans = redis.clone();
        let acquire = Coalescer::new(MAX_BATCH, MAX_IN_FLIGHT, move |reqs: Vec<AcquireReq>| {
            let redis = r.clone();
            async move {
                let answers = redis
                    .invoke_by_slot_each(
                        &reqs,
                        |q| &q.lock,
                        2,
                        |group| {
                            let mut call = ACQUIRE_BATCH.call();
                            for &i in group {
                                let q = &reqs[i];
                                call = call.key(&q.lock).key(&q.fence).arg(&q.token).arg(q.ttl_ms);
                            }
                            call
                        },
                    )
                    .await;
                Ok(reqs
                    .into_iter()
                    .zip(answers)
                    .map(|(q, answer)| match answer {
                        Ok(n) => {
                            let attempt = attempt(n[0], n[1]);
                            let held =
                                matches!(attempt, Attempt::Acquired { .. }).then_some(Held {
                                    lock: q.lock,
                                    token: q.token,
                                });
                            (Ok(attempt), held)
                        }
                        Err(e) => {
                            let channel = format!("{}:released", q.lock);
                            release_in_background(&redis, &RELEASE, vec![q.lock], q.token, channel);
                            (Err(e), None)
                        }
                    })
                    .collect())
            }
        })
        .on_orphan(move |(attempt, held): AcquireAnswer| {
            if let (Ok(Attempt::Acquired { .. }), Some(held)) = (attempt, held) {
                let channel = format!("{}:released", held.lock);
                release_in_background(&orphans, &RELEASE, vec![held.lock], held.token, channel);
            }
        });
        let r = redis.clone();
        let release = Coalescer::new(MAX_BATCH, MAX_IN_FLIGHT, move |reqs: Vec<ReleaseReq>| {
            let redis = r.clone();
            async move {
                let answers = redis
                    .invoke_by_slot_each(
                        &reqs,
                        |q| &q.lock,
                        1,
                        |group| {
                            let mut call = RELEASE_BATCH.call();
                            for &i in group {
                                let q = &reqs[i];
                                call = call.key(&q.lock).arg(&q.token).arg(&q.channel);
                            }
                            call
                        },
                    )
                    .await;
                Ok(answers.into_iter().map(|a| a.map(|n| n[0] == 1)).collect())
            }
        });
        Batches { acquire, release }
    }
}

/// An acquire script's answer (see [`Attempt::from_script`]).
fn attempt(ok: i64, n: i64) -> Attempt {
    Attempt::from_script(ok, n)
}

/// The keys of one resource, all on one hash tag.
#[derive(Debug)]
pub(crate) struct Keys {
    /// The exclusive holder's key (mutex lock, or the writer).
    pub(crate) main: Key,
    /// The shared holders (readers, permits).
    pub(crate) holders: Key,
    pub(crate) fence: Key,
    /// Writers waiting for a read-write lock (their intents keep new readers out).
    pub(crate) waiting: Key,
    pub(crate) channel: String,
}

/// The namespace of a kind under the prefix: `p:lock`, `p:rw` or `p:sem`.
pub(crate) fn namespace(root: &Keyspace, kind: Kind) -> Result<Keyspace> {
    Ok(root.child(match kind {
        Kind::Mutex => "lock",
        Kind::Read | Kind::Write => "rw",
        Kind::Permits(_) => "sem",
    })?)
}

/// The keys `kind` uses for `resource`, in the kind's namespace `ns`.
pub(crate) fn keys(ns: &Keyspace, kind: Kind, resource: &str) -> Result<Keys> {
    let base = ns.tagged(resource)?;
    let main = match kind {
        Kind::Mutex => base.clone(),
        _ => base.child("writer")?,
    };
    Ok(Keys {
        main,
        holders: base.child(if matches!(kind, Kind::Permits(_)) {
            "holders"
        } else {
            "readers"
        })?,
        fence: base.child("fence")?,
        waiting: base.child("writers-waiting")?,
        channel: format!("{base}:released"),
    })
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisBackend {
    /// One attempt; a writer that will wait records an intent of `intent` (zero: none).
    async fn attempt(
        &self,
        resource: &str,
        token: &str,
        ttl: Duration,
        intent: Duration,
    ) -> Result<Attempt> {
        if let Some(ack) = self.ack {
            return self.attempt_acked(ack, resource, token, ttl, intent).await;
        }
        if let Some(b) = &self.batches {
            // The mutex fast path builds only the two keys it needs.
            let lock = self.ns.tagged(resource)?;
            let req = AcquireReq {
                fence: lock.child("fence")?,
                lock,
                token: token.to_string(),
                ttl_ms: ms(ttl),
            };
            let (attempt, _held) = b.acquire.call(req).await?;
            return attempt?.checked(resource);
        }
        let k = keys(&self.ns, self.kind, resource)?;
        let call = match self.kind {
            Kind::Mutex => ACQUIRE.call().key(&k.main).key(&k.fence),
            Kind::Write => WRITE_ACQUIRE
                .call()
                .key(&k.main)
                .key(&k.holders)
                .key(&k.fence)
                .key(&k.waiting),
            Kind::Read | Kind::Permits(_) => SHARED_ACQUIRE
                .call()
                .key(&k.main)
                .key(&k.holders)
                .key(&k.fence)
                .key(&k.waiting),
        };
        // the write script's third argument is the intent, the shared one's the limit
        let third = match self.kind {
            Kind::Permits(n) => u64::from(n),
            Kind::Write if !intent.is_zero() => ms(intent),
            _ => 0,
        };
        let held = [if self.kind.exclusive() {
            &k.main
        } else {
            &k.holders
        }];
        let undo = UndoOnDrop {
            redis: &self.redis,
            script: if self.kind.exclusive() {
                &RELEASE
            } else {
                &SHARED_RELEASE
            },
            keys: &held,
            token,
            channel: &k.channel,
            armed: true,
        };
        // dropped here (this future cancelled) or on an error: the hold, if the script ran,
        // is released in the background
        let (ok, n): (i64, i64) = call
            .arg(token)
            .arg(ms(ttl))
            .arg(third)
            .invoke(&self.redis)
            .await?;
        undo.disarm();
        attempt(ok, n).checked(resource)
    }
}

impl RedisBackend {
    /// One attempt that counts only once acknowledged (see [`Ack`]).
    async fn attempt_acked(
        &self,
        ack: Ack,
        resource: &str,
        token: &str,
        ttl: Duration,
        intent: Duration,
    ) -> Result<Attempt> {
        check_ack_timeout(ack, ttl)?;
        let k = keys(&self.ns, self.kind, resource)?;
        let (script, keys, args): (&'static Script, Vec<Key>, Vec<u64>) = match self.kind {
            Kind::Mutex => (
                &ACQUIRE,
                vec![k.main.clone(), k.fence.clone()],
                vec![ms(ttl)],
            ),
            Kind::Write => (
                &WRITE_ACQUIRE,
                vec![
                    k.main.clone(),
                    k.holders.clone(),
                    k.fence.clone(),
                    k.waiting.clone(),
                ],
                vec![ms(ttl), if intent.is_zero() { 0 } else { ms(intent) }],
            ),
            Kind::Read | Kind::Permits(_) => (
                &SHARED_ACQUIRE,
                vec![
                    k.main.clone(),
                    k.holders.clone(),
                    k.fence.clone(),
                    k.waiting.clone(),
                ],
                vec![
                    ms(ttl),
                    match self.kind {
                        Kind::Permits(n) => u64::from(n),
                        _ => 0,
                    },
                ],
            ),
        };
        let (release, release_keys): (&'static Script, Vec<Key>) = if self.kind.exclusive() {
            (&RELEASE, vec![k.main])
        } else {
            (&SHARED_RELEASE, vec![k.holders])
        };
        let (ok, n) = Acked {
            redis: self.redis.clone(),
            ack,
            resource: resource.to_string(),
            script,
            keys,
            args,
            token: token.to_string(),
            release,
            release_keys,
            channel: k.channel,
        }
        .run()
        .await?;
        attempt(ok, n).checked(resource)
    }
}

/// An acknowledgement wait must end well within the TTL it protects.
fn check_ack_timeout(ack: Ack, ttl: Duration) -> Result<()> {
    if ack.timeout() >= ttl / 2 {
        return Err(crate::Error::InvalidArgument(format!(
            "the acknowledgement timeout {:?} must be shorter than half the ttl {ttl:?}",
            ack.timeout()
        )));
    }
    Ok(())
}

#[async_trait]
impl Backend for RedisBackend {
    async fn try_lock(&self, resource: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        self.attempt(resource, token, ttl, Duration::ZERO).await
    }

    async fn try_lock_waiting(
        &self,
        resource: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Attempt> {
        let intent = if self.kind == Kind::Write {
            backend::writer_intent()
        } else {
            Duration::ZERO
        };
        self.attempt(resource, token, ttl, intent).await
    }

    async fn withdraw(&self, resource: &str, token: &str) -> Result<()> {
        if self.kind == Kind::Write {
            let k = keys(&self.ns, self.kind, resource)?;
            let _: i64 = self
                .redis
                .query(redkit_core::redis::cmd("ZREM").arg(&k.waiting).arg(token))
                .await?;
        }
        Ok(())
    }

    async fn extend(&self, resource: &str, token: &str, ttl: Duration) -> Result<bool> {
        let k = keys(&self.ns, self.kind, resource)?;
        let call = if self.kind.exclusive() {
            EXTEND.call().key(&k.main)
        } else {
            SHARED_EXTEND.call().key(&k.holders)
        };
        let ok: i64 = call.arg(token).arg(ms(ttl)).invoke(&self.redis).await?;
        Ok(ok == 1)
    }

    async fn release(&self, resource: &str, token: &str) -> Result<bool> {
        if let Some(b) = &self.batches {
            let lock = self.ns.tagged(resource)?;
            let req = ReleaseReq {
                channel: format!("{lock}:released"),
                lock,
                token: token.to_string(),
            };
            return Ok(b.release.call(req).await??);
        }
        let k = keys(&self.ns, self.kind, resource)?;
        let call = if self.kind.exclusive() {
            RELEASE.call().key(&k.main)
        } else {
            SHARED_RELEASE.call().key(&k.holders)
        };
        let ok: i64 = call.arg(token).arg(&k.channel).invoke(&self.redis).await?;
        Ok(ok == 1)
    }

    async fn remaining(&self, resource: &str, token: &str) -> Result<Option<Duration>> {
        let k = keys(&self.ns, self.kind, resource)?;
        let call = if self.kind.exclusive() {
            HELD.call().key(&k.main)
        } else {
            SHARED_HELD.call().key(&k.holders)
        };
        let left: i64 = call.arg(token).invoke(&self.redis).await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    async fn listen(&self, resource: &str) -> Result<Box<dyn Waiter>> {
        if !self.notify {
            return Err(crate::Error::InvalidArgument(
                "release notifications are off".into(),
            ));
        }
        let k = keys(&self.ns, self.kind, resource)?;
        let sub = self.redis.subscribe(&k.channel).await?;
        Ok(Box::new(RedisWaiter(sub)))
    }
}

struct RedisWaiter(Subscription);

#[async_trait]
impl Waiter for RedisWaiter {
    async fn wait(&mut self) {
        // A message, a disconnect or a lag all mean: look at the lock again.
        if self.0.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Lock for RedisLock {
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        let span = tracing::debug_span!("redkit.lock.try_acquire", backend = "redis");
        backend::try_acquire(&self.backend, resource, AcquireOptions::new(ttl))
            .instrument(span)
            .await
    }

    async fn acquire(&self, resource: &str, options: AcquireOptions) -> Result<LockGuard> {
        let span = tracing::debug_span!("redkit.lock.acquire", backend = "redis");
        backend::acquire(&self.backend, resource, options)
            .instrument(span)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_touches_one_slot() {
        let root = Keyspace::new("app").unwrap();
        for kind in [Kind::Mutex, Kind::Read, Kind::Write, Kind::Permits(3)] {
            for resource in ["orders:42", "a", "x:y:z"] {
                let k = keys(&namespace(&root, kind).unwrap(), kind, resource).unwrap();
                let all = [
                    k.main.as_str(),
                    k.holders.as_str(),
                    k.fence.as_str(),
                    k.waiting.as_str(),
                ];
                assert!(redkit_core::same_slot(&all), "{kind:?} {all:?}");
            }
            assert!(keys(&namespace(&root, kind).unwrap(), kind, "user:{x").is_err());
        }
    }

    #[test]
    fn scripts_have_headers() {
        let all = [
            &*ACQUIRE,
            &*EXTEND,
            &*RELEASE,
            &*HELD,
            &*WRITE_ACQUIRE,
            &*SHARED_ACQUIRE,
            &*SHARED_EXTEND,
            &*SHARED_RELEASE,
            &*SHARED_HELD,
        ];
        for s in all {
            assert!(s.code().starts_with("-- KEYS"), "{}", s.name());
        }
    }
}

static MULTI_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new("multi_acquire", include_str!("../lua/multi_acquire.lua")));
static MULTI_EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new("multi_extend", include_str!("../lua/multi_extend.lua")));
static MULTI_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("multi_release", include_str!("../lua/multi_release.lua")));
static MULTI_HELD: LazyLock<Script> =
    LazyLock::new(|| Script::new("multi_held", include_str!("../lua/multi_held.lua")));

/// The keys of an all-or-none lock on `resources` of `group`: one lock key per resource
/// and the group's fencing counter, all on the group's hash tag.
pub(crate) fn multi_keys(
    root: &Keyspace,
    group: &str,
    resources: &[String],
) -> Result<(Vec<Key>, Key, String)> {
    let base = root.child("multi")?.tagged(group)?;
    let locks = resources
        .iter()
        .map(|r| base.child(&format!("r:{r}")))
        .collect::<redkit_core::Result<Vec<_>>>()?;
    Ok((locks, base.child("fence")?, format!("{base}:released")))
}

/// Checks a resource list: not empty, no duplicates, every name usable.
pub(crate) fn check_resources(resources: &[&str]) -> Result<Vec<String>> {
    if resources.is_empty() {
        return Err(crate::Error::InvalidArgument("no resources to lock".into()));
    }
    let mut names: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
    for r in &names {
        Keyspace::new("check")?.key(r)?;
    }
    names.sort();
    names.dedup();
    if names.len() != resources.len() {
        return Err(crate::Error::InvalidArgument(
            "a resource is listed twice".into(),
        ));
    }
    Ok(names)
}

#[derive(Debug)]
struct MultiBackend {
    redis: Redis,
    root: Keyspace,
    resources: Vec<String>,
    ack: Option<Ack>,
}

#[async_trait]
impl Backend for MultiBackend {
    async fn try_lock(&self, group: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        let (locks, fence, channel) = multi_keys(&self.root, group, &self.resources)?;
        if let Some(ack) = self.ack {
            check_ack_timeout(ack, ttl)?;
            let mut keys = locks.clone();
            keys.push(fence);
            let (ok, n) = Acked {
                redis: self.redis.clone(),
                ack,
                resource: group.to_string(),
                script: &MULTI_ACQUIRE,
                keys,
                args: vec![ms(ttl)],
                token: token.to_string(),
                release: &MULTI_RELEASE,
                release_keys: locks,
                channel,
            }
            .run()
            .await?;
            return Attempt::from_script(ok, n).checked(group);
        }
        let mut call = MULTI_ACQUIRE.call();
        for k in &locks {
            call = call.key(k);
        }
        let held: Vec<&Key> = locks.iter().collect();
        let undo = UndoOnDrop {
            redis: &self.redis,
            script: &MULTI_RELEASE,
            keys: &held,
            token,
            channel: &channel,
            armed: true,
        };
        let (ok, n): (i64, i64) = call
            .key(&fence)
            .arg(token)
            .arg(ms(ttl))
            .invoke(&self.redis)
            .await?;
        undo.disarm();
        Attempt::from_script(ok, n).checked(group)
    }

    async fn extend(&self, group: &str, token: &str, ttl: Duration) -> Result<bool> {
        let (locks, _, _) = multi_keys(&self.root, group, &self.resources)?;
        let mut call = MULTI_EXTEND.call();
        for k in &locks {
            call = call.key(k);
        }
        let ok: i64 = call.arg(token).arg(ms(ttl)).invoke(&self.redis).await?;
        Ok(ok == 1)
    }

    async fn release(&self, group: &str, token: &str) -> Result<bool> {
        let (locks, _, channel) = multi_keys(&self.root, group, &self.resources)?;
        let mut call = MULTI_RELEASE.call();
        for k in &locks {
            call = call.key(k);
        }
        let ok: i64 = call.arg(token).arg(channel).invoke(&self.redis).await?;
        Ok(ok == 1)
    }

    async fn remaining(&self, group: &str, token: &str) -> Result<Option<Duration>> {
        let (locks, _, _) = multi_keys(&self.root, group, &self.resources)?;
        let mut call = MULTI_HELD.call();
        for k in &locks {
            call = call.key(k);
        }
        let left: i64 = call.arg(token).invoke(&self.redis).await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    async fn listen(&self, group: &str) -> Result<Box<dyn Waiter>> {
        let (_, _, channel) = multi_keys(&self.root, group, &self.resources)?;
        Ok(Box::new(RedisWaiter(self.redis.subscribe(&channel).await?)))
    }
}

impl RedisLock {
    /// A backend that takes all of `resources` or none.
    fn all_of(&self, resources: &[&str]) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(MultiBackend {
            redis: self.redis.clone(),
            root: self.root.clone(),
            resources: check_resources(resources)?,
            ack: self.ack,
        }))
    }
}

#[async_trait]
impl crate::LockAll for RedisLock {
    async fn try_acquire_all(
        &self,
        group: &str,
        resources: &[&str],
        ttl: Duration,
    ) -> Result<Option<LockGuard>> {
        let backend = self.all_of(resources)?;
        backend::try_acquire(&backend, group, AcquireOptions::new(ttl)).await
    }

    async fn acquire_all(
        &self,
        group: &str,
        resources: &[&str],
        options: AcquireOptions,
    ) -> Result<LockGuard> {
        let backend = self.all_of(resources)?;
        backend::acquire(&backend, group, options).await
    }
}

#[cfg(test)]
mod multi_tests {
    use super::*;

    #[test]
    fn a_group_is_one_slot() {
        let root = Keyspace::new("app").unwrap();
        let names: Vec<String> = (0..20).map(|i| format!("account:{i}")).collect();
        let (locks, fence, _) = multi_keys(&root, "bank", &names).unwrap();
        let mut all: Vec<&str> = locks.iter().map(Key::as_str).collect();
        all.push(fence.as_str());
        assert!(redkit_core::same_slot(&all));
        assert!(check_resources(&["a", "a"]).is_err());
        assert!(check_resources(&[]).is_err());
        assert!(check_resources(&["a{b}"]).is_err());
        for s in [
            &*MULTI_ACQUIRE,
            &*MULTI_EXTEND,
            &*MULTI_RELEASE,
            &*MULTI_HELD,
        ] {
            assert!(s.code().starts_with("-- KEYS"), "{}", s.name());
        }
    }
}
