//! The in-memory backend: the same entries, tags, generations and locks in a map, on a
//! [`Clock`]. Handles built from one `MemoryCache` (clones or [`MemoryCache::handle`])
//! share the data, like processes sharing a Redis; there is no L1 (the map is local).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use redkit_core::{Clock, SystemClock};

use crate::core::Core;
use crate::store::{Link, Store, Write, ms};
use crate::{CacheConfig, Result, delegate_cache};

#[derive(Debug)]
struct State {
    generation: u64,
    /// (generation, key) -> (bytes, expires at ms)
    entries: HashMap<(u64, String), (Bytes, u64)>,
    /// (generation, key) -> (token, expires at ms)
    locks: HashMap<(u64, String), (String, u64)>,
    /// (generation, tag) -> key -> entry expiry ms
    tags: HashMap<(u64, String), BTreeMap<String, u64>>,
    /// Expired entries are swept when the map grows past this size.
    sweep_at: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct MemoryStore {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
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
                tags: HashMap::new(),
                sweep_at: 4096,
            })),
            clock: Arc::new(clock),
        };
        Ok(Self::on(store, config))
    }

    fn on(store: MemoryStore, config: CacheConfig) -> MemoryCache {
        MemoryCache {
            core: Arc::new(Core::new(store, config, Arc::new(Link::new(None)))),
        }
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

    fn delete_locked(state: &mut State, key: &str, now: u64) -> bool {
        let generation = state.generation;
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

    async fn write(&self, writes: &[Write]) -> Result<()> {
        let now = self.now_ms();
        let mut state = self.state();
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
        }
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

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let now = self.now_ms();
        let mut state = self.state();
        let id = (state.generation, key.to_string());
        if matches!(state.locks.get(&id), Some((_, at)) if *at > now) {
            return Ok(false);
        }
        state
            .locks
            .insert(id, (token.to_string(), now.saturating_add(ms(ttl))));
        Ok(true)
    }

    async fn fill(&self, write: &Write, token: &str) -> Result<bool> {
        let now = self.now_ms();
        {
            let mut state = self.state();
            let id = (state.generation, write.key.clone());
            match state.locks.get(&id) {
                Some((t, at)) if t == token && *at > now => {
                    state.locks.remove(&id);
                }
                _ => return Ok(false),
            }
        }
        self.write(std::slice::from_ref(write)).await?;
        Ok(true)
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<()> {
        let mut state = self.state();
        let id = (state.generation, key.to_string());
        if matches!(state.locks.get(&id), Some((t, _)) if t == token) {
            state.locks.remove(&id);
        }
        Ok(())
    }
}
