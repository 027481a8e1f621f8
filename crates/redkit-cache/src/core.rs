//! The cache logic both backends share: L1, single flight, early refresh,
//! stale-while-revalidate, negative caching and metrics.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use crate::config::{WriteMode, check_ttl, check_window};
use crate::envelope::{Envelope, Kind};
use crate::store::{Filled, Link, Put, Snapshot, Store, ms};
use crate::write::{self, DeadWrite, FlushReport, Flusher, Version, Write, WriteCounters, Writer};
use crate::{CacheConfig, Error, LoadOptions, Loader, Metrics, Result, SetOptions};

/// The longest key or tag accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// How long a load may take and still write its value (without distributed single
/// flight; with it, the lock's TTL if longer): the server forgets a load's fill marker
/// after this long, and a fill without its marker is refused.
pub(crate) const LOAD_WINDOW: Duration = Duration::from_secs(60);

/// `now + d`, or a far-future instant when that overflows.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

type Flight = Shared<BoxFuture<'static, Result<Option<Bytes>>>>;

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    l1_hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    stale_served: AtomicU64,
    early_refreshes: AtomicU64,
    lock_waits: AtomicU64,
    undecodable: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct Core<S> {
    pub(crate) store: S,
    pub(crate) config: CacheConfig,
    pub(crate) link: Arc<Link>,
    flights: Mutex<HashMap<String, Flight>>,
    counters: Counters,
    writes: WriteCounters,
    flusher: OnceLock<Flusher>,
}

impl<S: Store> fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &self.config.namespace)
            .field("store", &self.store)
            .field("link", &self.link)
            .finish()
    }
}

/// Checks a key or tag: non-empty, at most [`MAX_KEY_LEN`] bytes, no braces (they would
/// change the hash tag) and no control characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("empty {what}")));
    }
    if name.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} of {} bytes, over the limit of {MAX_KEY_LEN}",
            name.len()
        )));
    }
    if name.contains(['{', '}']) || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} {name:?} has braces or control characters"
        )));
    }
    Ok(())
}

/// Removes a finished load from the single-flight table when dropped.
struct Landed<S: Store> {
    core: Arc<Core<S>>,
    key: String,
}

impl<S: Store> Drop for Landed<S> {
    fn drop(&mut self) {
        self.core.flights().remove(&self.key);
    }
}

/// What a cached entry answers to `get_or_load`.
fn outcome(env: Envelope) -> Result<Option<Bytes>> {
    match env.kind {
        Kind::Value => Ok(Some(env.payload)),
        Kind::Absent => Ok(None),
        Kind::Failed => Err(Error::CachedLoadError(
            String::from_utf8_lossy(&env.payload).into_owned(),
        )),
    }
}

impl<S: Store> Core<S> {
    pub(crate) fn new(store: S, config: CacheConfig, link: Arc<Link>) -> Core<S> {
        Core {
            store,
            config,
            link,
            flights: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            writes: WriteCounters::default(),
            flusher: OnceLock::new(),
        }
    }

    /// Starts the write-behind flusher if the configuration asks for one.
    pub(crate) fn start_writes(self: &Arc<Self>) {
        if let WriteMode::Behind(_, options) = &self.config.writes
            && options.flusher
        {
            let _ = self.flusher.set(write::start(self, *options));
        }
    }

    /// The writer of write-through or write-behind.
    pub(crate) fn writer(&self) -> Option<&Arc<dyn Writer>> {
        match &self.config.writes {
            WriteMode::Aside => None,
            WriteMode::Through(w) | WriteMode::Behind(w, _) => Some(&w.0),
        }
    }

    pub(crate) fn write_counters(&self) -> &WriteCounters {
        &self.writes
    }

    /// Write-through: hands the changes to the writer; when it fails, the keys leave the
    /// cache (the records' state is unknown) and the call fails.
    async fn write_through(&self, writer: &Arc<dyn Writer>, changes: Vec<Write>) -> Result<()> {
        let Err(e) = writer.write(&changes).await else {
            return Ok(());
        };
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        if let Err(r) = self.store.remove(&keys).await {
            tracing::warn!(error = %r, "could not drop the entries of a failed write-through");
        }
        for k in &keys {
            self.link.invalidate(k).await;
        }
        Err(Error::Write(Arc::from(e)))
    }

    /// Waits until every write-behind write made before the call has been flushed (or
    /// dead-lettered), by whichever flusher owns its shard.
    pub(crate) async fn flush(&self, timeout: Duration) -> Result<()> {
        if !matches!(self.config.writes, WriteMode::Behind(..)) {
            return Ok(());
        }
        let target: Vec<Option<Version>> = self
            .store
            .log_state()
            .await?
            .iter()
            .map(|s| s.last)
            .collect();
        let deadline = deadline_after(timeout);
        loop {
            if let Some(f) = self.flusher.get() {
                f.wake.notify_one();
            }
            let now = self.store.log_state().await?;
            let behind = now
                .iter()
                .zip(&target)
                .filter(|(s, t)| matches!((s.first, t), (Some(first), Some(t)) if first <= *t));
            let pending: u64 = behind.map(|(s, _)| s.len).sum();
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::FlushTimeout { pending });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops this handle's flusher after it drained its shards, waiting at most
    /// `deadline`.
    pub(crate) async fn shutdown(&self, deadline: Duration) -> Result<FlushReport> {
        let drained = match self.flusher.get() {
            None => true,
            Some(f) => {
                let _ = f.stop.send(true);
                let task = f.task.lock().unwrap_or_else(|p| p.into_inner()).take();
                match task {
                    None => true,
                    Some(mut task) => match tokio::time::timeout(deadline, &mut task).await {
                        Ok(_) => true,
                        Err(_) => {
                            task.abort();
                            false
                        }
                    },
                }
            }
        };
        let pending = self.pending_writes().await?;
        Ok(FlushReport { pending, drained })
    }

    pub(crate) async fn pending_writes(&self) -> Result<u64> {
        if !matches!(self.config.writes, WriteMode::Behind(..)) {
            return Ok(0);
        }
        Ok(self.store.log_state().await?.iter().map(|s| s.len).sum())
    }

    pub(crate) async fn dead_writes(&self, limit: usize) -> Result<Vec<DeadWrite>> {
        if !matches!(self.config.writes, WriteMode::Behind(..)) {
            return Ok(Vec::new());
        }
        self.store.dead_writes(limit).await
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Metrics {
            hits: get(&c.hits),
            l1_hits: get(&c.l1_hits),
            misses: get(&c.misses),
            loads: get(&c.loads),
            load_errors: get(&c.load_errors),
            stale_served: get(&c.stale_served),
            early_refreshes: get(&c.early_refreshes),
            lock_waits: get(&c.lock_waits),
            undecodable: get(&c.undecodable),
            l1_entries: self.link.l1_len(),
            writes_flushed: get(&self.writes.flushed),
            writes_coalesced: get(&self.writes.coalesced),
            writes_dead: get(&self.writes.dead),
            write_retries: get(&self.writes.retries),
        }
    }

    pub(crate) fn report_undecodable(&self, key: &str) {
        bump(&self.counters.undecodable);
        tracing::warn!(key, "cached value could not be decoded; treated as a miss");
    }

    fn decode(&self, key: &str, raw: Option<Bytes>) -> Option<Envelope> {
        let raw = raw?;
        let env = Envelope::decode(raw);
        if env.is_none() {
            self.report_undecodable(key);
        }
        env
    }

    /// The key's entry if it is still usable (fresh or within its stale window): L1
    /// first, then the store (filling L1).
    async fn lookup(&self, key: &str) -> Result<Option<Envelope>> {
        let now = self.store.now_ms();
        if let Some(env) = self.link.get(key).await
            && env.is_usable(now)
        {
            bump(&self.counters.l1_hits);
            return Ok(Some(env));
        }
        let snap = self.link.snapshot(key);
        let raw = self.store.read(&[key]).await?.pop().flatten();
        let env = self
            .decode(key, raw)
            .filter(|e| e.is_usable(self.store.now_ms()));
        if let Some(e) = &env {
            self.link.insert(key, e.clone(), snap).await;
        }
        Ok(env)
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        check_name("key", key)?;
        let env = self.lookup(key).await?;
        Ok(self.fresh_value(env.as_ref()))
    }

    /// A fresh entry's value (counted as a hit), else a miss.
    fn fresh_value(&self, env: Option<&Envelope>) -> Option<Bytes> {
        match env {
            Some(e) if e.is_fresh(self.store.now_ms()) => {
                bump(&self.counters.hits);
                (e.kind == Kind::Value).then(|| e.payload.clone())
            }
            _ => {
                bump(&self.counters.misses);
                None
            }
        }
    }

    pub(crate) async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        for k in keys {
            check_name("key", k)?;
        }
        let now = self.store.now_ms();
        let mut out: Vec<Option<Option<Envelope>>> = Vec::with_capacity(keys.len());
        for k in keys {
            let local = self.link.get(k).await.filter(|e| e.is_usable(now));
            if local.is_some() {
                bump(&self.counters.l1_hits);
            }
            out.push(local.map(Some));
        }
        let missing: Vec<&str> = keys
            .iter()
            .zip(&out)
            .filter(|(_, o)| o.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            let snaps: Vec<Snapshot> = missing.iter().map(|k| self.link.snapshot(k)).collect();
            let read = self.store.read(&missing).await?;
            let mut read = missing.iter().zip(snaps).zip(read);
            for slot in out.iter_mut().filter(|o| o.is_none()) {
                let Some(((key, snap), raw)) = read.next() else {
                    break;
                };
                let env = self
                    .decode(key, raw)
                    .filter(|e| e.is_usable(self.store.now_ms()));
                if let Some(e) = &env {
                    self.link.insert(key, e.clone(), snap).await;
                }
                *slot = Some(env);
            }
        }
        Ok(out
            .into_iter()
            .map(|e| self.fresh_value(e.flatten().as_ref()))
            .collect())
    }

    /// An entry for `payload` written now with `opts` (TTL jittered).
    fn entry(
        &self,
        key: &str,
        kind: Kind,
        payload: Bytes,
        (ttl, stale): (Duration, Duration),
        delta: Duration,
        tags: &[String],
    ) -> Result<(Put, Envelope)> {
        check_ttl("ttl", ttl)?;
        check_window("stale window", stale)?;
        if payload.len() > self.config.max_value_size {
            return Err(Error::TooLarge {
                size: payload.len(),
                limit: self.config.max_value_size,
            });
        }
        for t in tags {
            check_name("tag", t)?;
        }
        let jitter = ttl
            .mul_f64(self.config.jitter)
            .min(self.config.max_jitter)
            .mul_f64(fastrand::f64());
        let fresh = ttl.saturating_sub(jitter).max(Duration::from_millis(1));
        // both at most 100 years (checked above): the sum cannot overflow, checked anyway
        let kept = fresh.checked_add(stale).ok_or_else(|| {
            Error::InvalidArgument(format!("ttl {ttl:?} plus stale window {stale:?}"))
        })?;
        let now = self.store.now_ms();
        let env = Envelope {
            kind,
            fresh_until: now.saturating_add(ms(fresh)),
            stale_until: now.saturating_add(ms(kept)),
            delta_ms: u32::try_from(delta.as_millis()).unwrap_or(u32::MAX),
            payload,
        };
        let write = Put {
            key: key.to_string(),
            bytes: env.encode(),
            ttl: kept,
            tags: tags.to_vec(),
        };
        Ok((write, env))
    }

    fn value_entry(
        &self,
        key: &str,
        value: Bytes,
        opts: &SetOptions,
        delta: Duration,
    ) -> Result<(Put, Envelope)> {
        let ttl = opts.ttl.unwrap_or(self.config.ttl);
        let stale = opts.stale.unwrap_or(self.config.stale);
        self.entry(key, Kind::Value, value, (ttl, stale), delta, &opts.tags)
    }

    pub(crate) async fn set_many(&self, items: &[(&str, &[u8])], opts: &SetOptions) -> Result<()> {
        opts.validate()?;
        let mut writes = Vec::with_capacity(items.len());
        let mut envs = Vec::with_capacity(items.len());
        for (k, v) in items {
            check_name("key", k)?;
            let (w, env) = self.value_entry(k, Bytes::copy_from_slice(v), opts, Duration::ZERO)?;
            writes.push(w);
            envs.push(env);
        }
        let snaps: Vec<Snapshot> = items.iter().map(|(k, _)| self.link.snapshot(k)).collect();
        match &self.config.writes {
            WriteMode::Aside => self.write_or_drop(&writes).await?,
            WriteMode::Through(w) => {
                let changes = items
                    .iter()
                    .map(|(k, v)| Write::new(*k, Some(Bytes::copy_from_slice(v)), None))
                    .collect();
                self.write_through(&w.0, changes).await?;
                self.write_or_drop(&writes).await?;
            }
            // one script per shard, each all or nothing (see the README: a failure over
            // several shards leaves the other shards' writes logged)
            WriteMode::Behind(..) => self.store.log_write(&writes).await?,
        }
        // this process reads its own writes from L1 (other processes drop theirs)
        for (((k, _), env), snap) in items.iter().zip(envs).zip(snaps) {
            self.link.insert(k, env, snap).await;
        }
        Ok(())
    }

    /// Writes entries (one script per slot). When that fails, some slots may have been
    /// written while the caller gets an error: the batch's keys are then dropped from the
    /// cache (always safe for a cache: the next read loads), so nothing of a failed call
    /// stays. If dropping them fails too, it is logged.
    async fn write_or_drop(&self, writes: &[Put]) -> Result<()> {
        let Err(e) = self.store.write(writes).await else {
            return Ok(());
        };
        let keys: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        if let Err(r) = self.store.remove(&keys).await {
            tracing::warn!(error = %r, "could not drop the entries of a failed write");
        }
        for k in &keys {
            self.link.invalidate(k).await;
        }
        Err(e)
    }

    pub(crate) async fn delete(&self, keys: &[&str]) -> Result<u64> {
        for k in keys {
            check_name("key", k)?;
        }
        let n = match &self.config.writes {
            WriteMode::Aside => self.store.remove(keys).await?,
            WriteMode::Through(w) => {
                let changes = keys.iter().map(|k| Write::new(*k, None, None)).collect();
                self.write_through(&w.0, changes).await?;
                self.store.remove(keys).await?
            }
            WriteMode::Behind(..) => self.store.log_remove(keys).await?,
        };
        for k in keys {
            self.link.invalidate(k).await;
        }
        Ok(n)
    }

    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        check_name("key", key)?;
        let now = self.store.now_ms();
        Ok(matches!(self.lookup(key).await?, Some(e) if e.kind == Kind::Value && e.is_fresh(now)))
    }

    pub(crate) async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64> {
        for t in tags {
            check_name("tag", t)?;
        }
        let (keys, existed) = self.store.invalidate_tags(tags).await?;
        for k in &keys {
            self.link.invalidate(k).await;
        }
        Ok(existed)
    }

    pub(crate) async fn clear(&self) -> Result<()> {
        self.store.clear().await?;
        self.link.invalidate_all();
        Ok(())
    }

    pub(crate) async fn get_or_load(
        self: &Arc<Self>,
        key: &str,
        opts: &LoadOptions,
        loader: Loader,
    ) -> Result<Option<Bytes>> {
        check_name("key", key)?;
        opts.validate()?;
        let now = self.store.now_ms();
        if let Some(env) = self.lookup(key).await? {
            if env.is_fresh(now) {
                bump(&self.counters.hits);
                if env.kind == Kind::Value && env.wants_early_refresh(now, self.config.beta) {
                    bump(&self.counters.early_refreshes);
                    drop(self.flight(key, opts, loader, Some(env.fresh_until)));
                }
                return outcome(env);
            }
            if env.kind == Kind::Value {
                // stale: serve it, refresh in the background (once)
                bump(&self.counters.stale_served);
                drop(self.flight(key, opts, loader, Some(env.fresh_until)));
                return Ok(Some(env.payload));
            }
        }
        bump(&self.counters.misses);
        self.flight(key, opts, loader, None).await
    }

    pub(crate) async fn load(
        self: &Arc<Self>,
        key: &str,
        opts: &LoadOptions,
        loader: Loader,
    ) -> Result<Option<Bytes>> {
        check_name("key", key)?;
        opts.validate()?;
        self.flight(key, opts, loader, Some(u64::MAX)).await
    }

    /// Joins the key's load in flight, or starts one. `refresh` is the `fresh_until` of
    /// the entry being refreshed (`None` for a miss): another process's write counts as
    /// the result only if it is newer. The load runs in its own task, so a caller that
    /// gives up does not cancel it for the others.
    fn flight(
        self: &Arc<Self>,
        key: &str,
        opts: &LoadOptions,
        loader: Loader,
        refresh: Option<u64>,
    ) -> Flight {
        let mut flights = self.flights();
        if let Some(f) = flights.get(key) {
            return f.clone();
        }
        let core = Arc::clone(self);
        let k = key.to_string();
        let opts = opts.clone();
        let task = tokio::spawn(async move {
            // leaves the table however the load ends, a panicking loader included
            let _done = Landed {
                core: Arc::clone(&core),
                key: k.clone(),
            };
            core.run_load(&k, &opts, loader, refresh).await
        });
        let flight = async move {
            task.await.unwrap_or_else(|e| {
                Err(Error::Load(Arc::new(std::io::Error::other(format!(
                    "the loader panicked or was cancelled: {e}"
                )))))
            })
        }
        .boxed()
        .shared();
        flights.insert(key.to_string(), flight.clone());
        flight
    }

    /// One load: begins it on the store (taking the load lock with distributed single
    /// flight, or waiting for another process's value), runs the loader and writes its
    /// result unless the entry was written or deleted since the load began.
    async fn run_load(
        &self,
        key: &str,
        opts: &LoadOptions,
        loader: Loader,
        refresh: Option<u64>,
    ) -> Result<Option<Bytes>> {
        let snap = self.link.snapshot(key);
        let baseline = refresh.unwrap_or(0);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let window = self.load_window();
        let mut locked = false;
        if let Some(flight) = self.config.flight {
            let deadline = deadline_after(flight.wait);
            let mut pause = Duration::from_millis(2);
            loop {
                if self
                    .store
                    .begin(key, &token, Some(flight.lock_ttl), window)
                    .await?
                {
                    locked = true;
                    break;
                }
                bump(&self.counters.lock_waits);
                if let Some(env) = self.newer(key, baseline).await? {
                    return self.settle(key, env, snap).await;
                }
                if Instant::now() >= deadline {
                    tracing::debug!(key, "waited for another process's load too long; loading");
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            // someone may have filled it just before the lock was ours
            if locked && let Some(env) = self.newer(key, baseline).await? {
                self.store.abandon(key, &token, true).await?;
                return self.settle(key, env, snap).await;
            }
        }
        if !locked {
            self.store.begin(key, &token, None, window).await?;
        }
        let started = Instant::now();
        let outcome = loader().await;
        let delta = started.elapsed();
        bump(&self.counters.loads);
        pause!(self.config, "load:before-fill");
        let write = match outcome {
            Ok(Some(value)) => Some(self.value_entry(key, Bytes::from(value), &opts.entry, delta)),
            Ok(None) => self.config.negative_ttl.map(|ttl| {
                self.entry(
                    key,
                    Kind::Absent,
                    Bytes::new(),
                    (ttl, Duration::ZERO),
                    delta,
                    &opts.entry.tags,
                )
            }),
            Err(e) => {
                bump(&self.counters.load_errors);
                let message = e.to_string();
                let err = Error::Load(Arc::from(e));
                let cached = opts.cache_errors.filter(|_| refresh.is_none()).map(|ttl| {
                    self.entry(
                        key,
                        Kind::Failed,
                        Bytes::from(message),
                        (ttl, Duration::ZERO),
                        delta,
                        &[],
                    )
                });
                if let Some(Ok((w, _))) = cached {
                    self.put(&w, &token, locked).await;
                } else {
                    self.store.abandon(key, &token, locked).await?;
                }
                return Err(err);
            }
        };
        match write {
            Some(Ok((w, env))) => {
                let value = (env.kind == Kind::Value).then(|| env.payload.clone());
                if self.put(&w, &token, locked).await {
                    self.link.insert(key, env, snap).await;
                }
                pause!(self.config, "load:filled");
                Ok(value)
            }
            Some(Err(e)) => {
                self.store.abandon(key, &token, locked).await?;
                Err(e)
            }
            None => {
                self.store.abandon(key, &token, locked).await?;
                Ok(None)
            }
        }
    }

    /// How long a load may take and still write its value: the lock's TTL with
    /// distributed single flight, and at least [`LOAD_WINDOW`].
    fn load_window(&self) -> Duration {
        self.config
            .flight
            .map_or(LOAD_WINDOW, |f| f.lock_ttl.max(LOAD_WINDOW))
    }

    /// Writes a loaded entry (through the lock when it holds one) unless the entry was
    /// written or deleted since the load began; whether it was written. A failed write
    /// is logged, not returned: the caller still gets the loaded value.
    async fn put(&self, w: &Put, token: &str, locked: bool) -> bool {
        match self.store.fill(w, token, locked).await {
            Ok(Filled::Written) => true,
            Ok(Filled::LockLost) => {
                tracing::warn!(
                    key = w.key,
                    "the load outlived its lock; its value was not written"
                );
                false
            }
            Ok(Filled::Superseded) => {
                tracing::debug!(
                    key = w.key,
                    "written or deleted while it loaded (or the load outlived its window); the loaded value was dropped"
                );
                false
            }
            Err(e) => {
                tracing::warn!(key = w.key, error = %e, "could not write a loaded value");
                false
            }
        }
    }

    /// The entry if another writer stored one newer than `baseline` that is fresh.
    async fn newer(&self, key: &str, baseline: u64) -> Result<Option<Envelope>> {
        let raw = self.store.read(&[key]).await?.pop().flatten();
        let now = self.store.now_ms();
        Ok(self
            .decode(key, raw)
            .filter(|e| e.fresh_until > baseline && e.is_fresh(now)))
    }

    /// The result of a load another process made.
    async fn settle(&self, key: &str, env: Envelope, snap: Snapshot) -> Result<Option<Bytes>> {
        self.link.insert(key, env.clone(), snap).await;
        outcome(env)
    }
}
