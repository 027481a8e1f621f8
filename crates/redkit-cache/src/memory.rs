//! The in-memory backend: the same entries, tags, generations and locks in a map, on a
//! [`Clock`]. Handles built from one `MemoryCache` (clones or [`MemoryCache::handle`])
//! share the data, like processes sharing a Redis; there is no L1 (the map is local).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use redkit_core::{Clock, SystemClock};

use crate::config::WriteMode;
use crate::core::Core;
use crate::envelope::HEADER;
use crate::store::{Filled, Link, LogState, Put, Store, ms};
use crate::write::{DeadWrite, Version, Write, shard_of};
use crate::{CacheConfig, Result, delegate_cache};

#[derive(Debug)]
struct State {
    generation: u64,
    /// (generation, key) -> (bytes, expires at ms)
    entries: HashMap<(u64, String), (Bytes, u64)>,
    /// (generation, key) -> (token, expires at ms)
    locks: HashMap<(u64, String), (String, u64)>,
    /// (generation, key) -> (tokens of the loads begun since the last change, expires at
    /// ms): what Redis keeps in an entry's fill markers.
    fills: HashMap<(u64, String), (HashSet<String>, u64)>,
    /// (generation, tag) -> key -> entry expiry ms
    tags: HashMap<(u64, String), BTreeMap<String, u64>>,
    /// Expired entries are swept when the map grows past this size.
    sweep_at: usize,
    /// Write-behind logs by shard.
    logs: HashMap<u16, Log>,
}

/// A write-behind log: what its Redis stream, lease and dead letters hold.
#[derive(Debug, Default)]
struct Log {
    records: BTreeMap<Version, Write>,
    last: Option<Version>,
    lease: Option<(String, u64)>,
    dead: Vec<DeadWrite>,
}

impl Log {
    /// The next version: after the last one, on the clock when it moved on.
    fn append(&mut self, now: u64, write: Write) {
        let v = match self.last {
            Some(l) if l.millis() >= now => Version::new(l.millis(), l.sequence() + 1),
            _ => Version::new(now, 0),
        };
        self.last = Some(v);
        self.records.insert(
            v,
            Write {
                version: Some(v),
                ..write
            },
        );
    }
}

#[derive(Debug, Clone)]
pub(crate) struct MemoryStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
    /// Write-behind shards (1 when write-behind is off: the log stays empty).
    shards: u16,
}

/// A cache in process memory with the behaviour of [`crate::RedisCache`] (conformance
/// suite), for tests and single-process use. Cheap to clone; clones share the data.
#[derive(Debug, Clone)]
pub struct MemoryCache {
    core: Arc<Core<MemoryStore>>,
}

delegate_cache!(MemoryCache);

impl MemoryCache {
    /// A cache on the system clock. [`CacheConfig::local`] is ignored: there is nothing
    /// to put in front of a map.
    pub fn new(config: CacheConfig) -> Result<MemoryCache> {
        Self::with_clock(config, SystemClock)
    }

    /// A cache on the given clock (a `ManualClock` in tests).
    pub fn with_clock(config: CacheConfig, clock: impl Clock) -> Result<MemoryCache> {
        config.validate()?;
        let store = MemoryStore {
            state: Arc::new(Mutex::new(State {
                generation: 0,
                entries: HashMap::new(),
                locks: HashMap::new(),
                fills: HashMap::new(),
                tags: HashMap::new(),
                sweep_at: 4096,
                logs: HashMap::new(),
            })),
            clock: Arc::new(clock),
            shards: match &config.writes {
                WriteMode::Behind(_, options) => options.shards,
                _ => 1,
            },
        };
        Ok(Self::on(store, config))
    }

    fn on(store: MemoryStore, config: CacheConfig) -> MemoryCache {
        let core = Arc::new(Core::new(store, config, Arc::new(Link::new(None))));
        core.start_writes();
        MemoryCache { core }
    }

    /// Another handle on the same data with its own counters and single-flight table,
    /// as a second process would have.
    pub fn handle(&self) -> MemoryCache {
        Self::on(self.core.store.clone(), self.core.config.clone())
    }
}

impl MemoryStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_locked(state: &mut State, writes: &[Put], now: u64) {
        let generation = state.generation;
        for w in writes {
            let until = now.saturating_add(ms(w.ttl));
            for t in &w.tags {
                let tag = state.tags.entry((generation, t.clone())).or_default();
                tag.retain(|_, at| *at > now);
                let at = tag.entry(w.key.clone()).or_insert(until);
                *at = (*at).max(until);
            }
            state.entries.insert(
                (generation, w.key.clone()),
                (Bytes::from(w.bytes.clone()), until),
            );
            state.fills.remove(&(generation, w.key.clone()));
        }
    }

    fn delete_locked(state: &mut State, key: &str, now: u64) -> bool {
        let generation = state.generation;
        state.fills.remove(&(generation, key.to_string()));
        matches!(state.entries.remove(&(generation, key.to_string())), Some((_, at)) if at > now)
    }
}

impl Store for MemoryStore {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    async fn read(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let now = self.now_ms();
        let mut state = self.state();
        let generation = state.generation;
        if state.entries.len() > state.sweep_at {
            state.entries.retain(|_, (_, at)| *at > now);
            state.locks.retain(|_, (_, at)| *at > now);
            state.fills.retain(|_, (_, at)| *at > now);
            state.sweep_at = (state.entries.len() * 2).max(4096);
        }
        Ok(keys
            .iter()
            .map(|k| match state.entries.get(&(generation, k.to_string())) {
                Some((b, at)) if *at > now => Some(b.clone()),
                _ => None,
            })
            .collect())
    }

    async fn write(&self, writes: &[Put]) -> Result<()> {
        let now = self.now_ms();
        Self::write_locked(&mut self.state(), writes, now);
        Ok(())
    }

    async fn remove(&self, keys: &[&str]) -> Result<u64> {
        let now = self.now_ms();
        let mut state = self.state();
        Ok(keys
            .iter()
            .filter(|k| Self::delete_locked(&mut state, k, now))
            .count() as u64)
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<(Vec<String>, u64)> {
        let now = self.now_ms();
        let mut state = self.state();
        let generation = state.generation;
        let mut keys = Vec::new();
        for t in tags {
            if let Some(members) = state.tags.remove(&(generation, t.to_string())) {
                keys.extend(
                    members
                        .into_iter()
                        .filter(|(_, at)| *at > now)
                        .map(|(k, _)| k),
                );
            }
        }
        keys.sort();
        keys.dedup();
        let existed = keys
            .iter()
            .filter(|k| Self::delete_locked(&mut state, k, now))
            .count() as u64;
        Ok((keys, existed))
    }

    async fn clear(&self) -> Result<()> {
        let mut state = self.state();
        let old = state.generation;
        state.generation += 1;
        // the old generation is unreachable: drop it now rather than by TTL
        state.entries.retain(|(g, _), _| *g != old);
        state.tags.retain(|(g, _), _| *g != old);
        Ok(())
    }

    async fn begin(
        &self,
        key: &str,
        token: &str,
        lock: Option<Duration>,
        window: Duration,
    ) -> Result<bool> {
        let now = self.now_ms();
        let mut state = self.state();
        let id = (state.generation, key.to_string());
        if let Some(ttl) = lock {
            if matches!(state.locks.get(&id), Some((_, at)) if *at > now) {
                return Ok(false);
            }
            state
                .locks
                .insert(id.clone(), (token.to_string(), now.saturating_add(ms(ttl))));
        }
        let until = now.saturating_add(ms(window));
        let fills = state.fills.entry(id).or_insert_with(|| (HashSet::new(), 0));
        if fills.1 <= now {
            fills.0.clear();
        }
        fills.0.insert(token.to_string());
        fills.1 = fills.1.max(until);
        Ok(true)
    }

    async fn fill(&self, write: &Put, token: &str, locked: bool) -> Result<Filled> {
        let now = self.now_ms();
        let mut state = self.state();
        let id = (state.generation, write.key.clone());
        let lost =
            locked && !matches!(state.locks.get(&id), Some((t, at)) if t == token && *at > now);
        let ours = matches!(state.fills.get(&id), Some((tokens, at)) if *at > now && tokens.contains(token));
        if ours && let Some((tokens, _)) = state.fills.get_mut(&id) {
            tokens.remove(token);
        }
        if locked && !lost {
            state.locks.remove(&id);
        }
        if lost {
            return Ok(Filled::LockLost);
        }
        if !ours {
            return Ok(Filled::Superseded);
        }
        // the entry's write clears the other loads' markers, as SET does not: keep them
        let others = state.fills.remove(&id);
        Self::write_locked(&mut state, std::slice::from_ref(write), now);
        if let Some(others) = others.filter(|(t, _)| !t.is_empty()) {
            state.fills.insert(id, others);
        }
        Ok(Filled::Written)
    }

    async fn abandon(&self, key: &str, token: &str, locked: bool) -> Result<()> {
        let mut state = self.state();
        let id = (state.generation, key.to_string());
        if let Some((tokens, _)) = state.fills.get_mut(&id) {
            tokens.remove(token);
        }
        if locked && matches!(state.locks.get(&id), Some((t, _)) if t == token) {
            state.locks.remove(&id);
        }
        Ok(())
    }

    async fn log_write(&self, writes: &[Put]) -> Result<()> {
        let now = self.now_ms();
        let mut state = self.state();
        Self::write_locked(&mut state, writes, now);
        for w in writes {
            let value = bytes::Bytes::copy_from_slice(w.bytes.get(HEADER..).unwrap_or_default());
            state
                .logs
                .entry(shard_of(&w.key, self.shards))
                .or_default()
                .append(now, Write::new(w.key.clone(), Some(value), None));
        }
        Ok(())
    }

    async fn log_remove(&self, keys: &[&str]) -> Result<u64> {
        let now = self.now_ms();
        let mut state = self.state();
        let mut existed = 0;
        for k in keys {
            existed += u64::from(Self::delete_locked(&mut state, k, now));
            state
                .logs
                .entry(shard_of(k, self.shards))
                .or_default()
                .append(now, Write::new(*k, None, None));
        }
        Ok(existed)
    }

    async fn lease(&self, shard: u16, token: &str, ttl: Duration) -> Result<bool> {
        let now = self.now_ms();
        let mut state = self.state();
        let log = state.logs.entry(shard).or_default();
        match &log.lease {
            Some((t, at)) if *at > now && t != token => Ok(false),
            _ => {
                log.lease = Some((token.to_string(), now.saturating_add(ms(ttl))));
                Ok(true)
            }
        }
    }

    async fn release(&self, shard: u16, token: &str) -> Result<()> {
        let mut state = self.state();
        if let Some(log) = state.logs.get_mut(&shard)
            && matches!(&log.lease, Some((t, _)) if t == token)
        {
            log.lease = None;
        }
        Ok(())
    }

    async fn renew(&self, shard: u16, token: &str, ttl: Duration) -> Result<bool> {
        let now = self.now_ms();
        let mut state = self.state();
        let log = state.logs.entry(shard).or_default();
        match &mut log.lease {
            Some((t, at)) if *at > now && t == token => {
                *at = now.saturating_add(ms(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn read_log(&self, shard: u16, count: usize) -> Result<Vec<Write>> {
        let mut state = self.state();
        let log = state.logs.entry(shard).or_default();
        Ok(log.records.values().take(count).cloned().collect())
    }

    async fn settle(
        &self,
        shard: u16,
        token: &str,
        done: &[Version],
        dead: &[DeadWrite],
    ) -> Result<bool> {
        let now = self.now_ms();
        let mut state = self.state();
        let log = state.logs.entry(shard).or_default();
        if !matches!(&log.lease, Some((t, at)) if t == token && *at > now) {
            return Ok(false);
        }
        for v in done {
            log.records.remove(v);
        }
        log.dead.extend(dead.iter().cloned());
        Ok(true)
    }

    async fn log_state(&self) -> Result<Vec<LogState>> {
        let state = self.state();
        Ok((0..self.shards)
            .map(|i| match state.logs.get(&i) {
                Some(log) => LogState {
                    len: log.records.len() as u64,
                    first: log.records.keys().next().copied(),
                    last: log.records.keys().next_back().copied(),
                },
                None => LogState::default(),
            })
            .collect())
    }

    async fn dead_writes(&self, limit: usize) -> Result<Vec<DeadWrite>> {
        let state = self.state();
        let mut dead: Vec<DeadWrite> = (0..self.shards)
            .filter_map(|i| state.logs.get(&i))
            .flat_map(|log| log.dead.iter().cloned())
            .collect();
        dead.sort_by_key(|d| d.write.version);
        dead.truncate(limit);
        Ok(dead)
    }
}
