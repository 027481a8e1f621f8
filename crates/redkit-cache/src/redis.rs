//! The Redis backend: entries as strings under a namespace generation, tags as sorted
//! sets, invalidation messages on one channel per namespace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redkit_core::redis::streams::StreamRangeReply;
use redkit_core::redis::{Value, cmd, from_redis_value};
use redkit_core::{Coalescer, Key, Keyspace, Pipeline, Redis, Script};
use redkit_core::{Event, Message};

use crate::config::WriteMode;
use crate::core::Core;
use crate::store::{Filled, Link, LogState, Put, Store, ms};
use crate::write::{DeadWrite, Version, Write, shard_of};
use crate::{CacheConfig, Error, Result, delegate_cache};

static SET: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_set", include_str!("../lua/set.lua")));
static FILL: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_fill", include_str!("../lua/fill.lua")));
static BEGIN: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_begin", include_str!("../lua/begin.lua")));
static ABANDON: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_abandon", include_str!("../lua/abandon.lua")));
static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_unlock", include_str!("../lua/unlock.lua")));
static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_delete", include_str!("../lua/delete.lua")));
static TAG: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_tag", include_str!("../lua/tag.lua")));
static BUMP: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_bump", include_str!("../lua/bump.lua")));
static BEHIND: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_behind", include_str!("../lua/behind.lua")));
static LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_lease", include_str!("../lua/lease.lua")));
static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_settle", include_str!("../lua/settle.lua")));

/// The keys of one write-behind shard: its hash tag (shared by the shard's entries), the
/// log, the flush lease and the dead letters.
#[derive(Debug)]
struct Shard {
    tag: String,
    log: Key,
    owner: Key,
    dead: Key,
}

impl Shard {
    fn new(base: &Keyspace, namespace: &str, i: u16) -> Result<Shard> {
        let tag = format!("{namespace}#{i}");
        let log = base.child("wb")?.tagged(&tag)?;
        Ok(Shard {
            owner: log.child("owner")?,
            dead: log.child("dead")?,
            log,
            tag,
        })
    }
}

/// What this process knows of the namespace's generation: `None` when it must be read.
/// `resets` moves whenever the invalidation link drops or comes back, so a read that
/// raced with that is not kept.
#[derive(Debug, Default)]
struct Generation {
    value: Mutex<Option<(u64, Arc<Keyspace>)>>,
    resets: AtomicU64,
}

impl Generation {
    fn known(&self) -> Option<Arc<Keyspace>> {
        let v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        v.as_ref().map(|(_, space)| Arc::clone(space))
    }

    /// Keeps the newest generation seen (they only grow).
    fn observe(&self, generation: u64, base: &Keyspace) -> Result<Arc<Keyspace>> {
        let mut v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        match v.as_ref() {
            Some((g, space)) if *g >= generation => Ok(Arc::clone(space)),
            _ => {
                let space = Arc::new(base.child(&format!("g{generation}"))?);
                *v = Some((generation, Arc::clone(&space)));
                Ok(space)
            }
        }
    }

    fn reset(&self) {
        self.resets.fetch_add(1, Ordering::SeqCst);
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The keys a user key has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The entry (value and header).
    Entry,
    /// The load lock of distributed single flight.
    Lock,
    /// The fill markers: tokens of loads begun since the last change.
    Fill,
}

/// The Redis key of `role` for a user key, tagged by the key or (write-behind) by its
/// shard's tag: see `RedisStore::internal_key`.
fn key_of(space: &Keyspace, shard_tag: Option<&str>, key: &str, role: Role) -> Result<Key> {
    match shard_tag {
        None => {
            let entry = space.tagged(key)?;
            Ok(match role {
                Role::Entry => entry,
                Role::Lock => entry.child("lock")?,
                Role::Fill => entry.child("fill")?,
            })
        }
        Some(tag) => {
            let role = match role {
                Role::Entry => "e:",
                Role::Lock => "lock:",
                Role::Fill => "fill:",
            };
            let mut name = String::with_capacity(role.len() + key.len());
            name.push_str(role);
            name.push_str(key);
            Ok(space.tagged_child(tag, &name)?)
        }
    }
}

/// Aborts the listener task when the store goes away.
#[derive(Debug)]
struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
pub(crate) struct RedisStore {
    redis: Redis,
    base: Keyspace,
    gen_key: Key,
    channel: String,
    /// This handle's id, first in every message it publishes, so it skips its own.
    instance: String,
    generation: Arc<Generation>,
    link: Arc<Link>,
    /// Single-key reads of concurrent callers, sent together (`MGET`, or one pipeline
    /// per slot on a cluster) while earlier ones are in flight.
    reads: Coalescer<String, Option<Bytes>>,
    /// Write-behind shards (empty without write-behind: entries are tagged by key).
    shards: Vec<Shard>,
    _listener: Listener,
}

/// A cache on Redis (standalone, sentinel or cluster), optionally with an in-process L1.
///
/// Keys: entries `<prefix>:cache:<ns>:g<n>:{<key>}` (strings: a 22-byte header and the
/// value), load locks `…:{<key>}:lock`, fill markers `…:{<key>}:fill` (with write-behind
/// `…:{<ns>#<shard>}:e:<key>`, `…:lock:<key>`, `…:fill:<key>`), tags
/// `<prefix>:cache:<ns>:g<n>:tag:{<tag>}`,
/// the generation `<prefix>:cache:<ns>:generation`; invalidation messages on the channel
/// `<prefix>:cache:<ns>:inv`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisCache {
    core: Arc<Core<RedisStore>>,
}

delegate_cache!(RedisCache);

impl RedisCache {
    /// Builds a cache on `redis` and subscribes to its invalidation channel (generation
    /// changes and, with an L1, entry invalidations from other processes).
    pub async fn new(redis: &Redis, config: CacheConfig) -> Result<RedisCache> {
        config.validate()?;
        let base = Keyspace::new(&config.prefix)?
            .child("cache")?
            .child(&config.namespace)?;
        let gen_key = base.key("generation")?;
        let channel = format!("{}:inv", base.prefix());
        let link = Arc::new(Link::new(
            config.local.map(|l| (l.capacity, l.max_staleness)),
        ));
        let generation = Arc::new(Generation::default());
        let instance = uuid::Uuid::new_v4().simple().to_string();
        // subscribed before the generation is first read, so no change is missed
        let mut sub = redis.subscribe(&channel).await?;
        let listener = {
            let (link, generation, instance) =
                (Arc::clone(&link), Arc::clone(&generation), instance.clone());
            let base = base.clone();
            #[cfg(feature = "__test-hooks")]
            let config = config.clone();
            tokio::spawn(async move {
                // the connection is down from a disconnection until the resubscription
                let mut down = false;
                while let Some(event) = sub.recv().await {
                    match event {
                        Event::Message(m) => {
                            pause!(config, "listener:message");
                            on_message(&m, &instance, &link, &generation, &base).await
                        }
                        Event::Disconnected => {
                            tracing::debug!("cache invalidation link lost; L1 cleared");
                            down = true;
                            generation.reset();
                            link.set_up(false);
                        }
                        Event::Lagged { missed } => {
                            // messages were dropped, the connection still works: what
                            // L1 holds may be stale, so it is emptied, and it serves
                            // again at once (unless the connection is down too)
                            tracing::debug!(
                                missed,
                                "cache invalidation messages missed; L1 cleared"
                            );
                            generation.reset();
                            link.set_up(!down);
                            pause!(config, "listener:lagged");
                        }
                        Event::Resubscribed => {
                            down = false;
                            generation.reset();
                            link.set_up(true);
                        }
                        _ => {}
                    }
                }
            })
        };
        let reads = {
            let redis = redis.clone();
            Coalescer::new(128, 2, move |keys: Vec<String>| {
                let redis = redis.clone();
                async move { read_batch(&redis, &keys).await }
            })
        };
        let shards = match &config.writes {
            WriteMode::Behind(_, options) => (0..options.shards)
                .map(|i| Shard::new(&base, &config.namespace, i))
                .collect::<Result<_>>()?,
            _ => Vec::new(),
        };
        let store = RedisStore {
            reads,
            shards,
            redis: redis.clone(),
            base,
            gen_key,
            channel,
            instance,
            generation,
            link: Arc::clone(&link),
            _listener: Listener(listener),
        };
        let core = Arc::new(Core::new(store, config, link));
        core.start_writes();
        Ok(RedisCache { core })
    }

    /// The Redis key of an entry in the current generation (for inspection and tests).
    pub async fn entry_key(&self, key: &str) -> Result<Key> {
        crate::core::check_name("key", key)?;
        let space = self.core.store.space().await?;
        self.core.store.entry_key(&space, key)
    }

    /// The write-behind log of a key's shard (a stream), for inspection and tests.
    pub fn log_key(&self, key: &str) -> Result<Option<&Key>> {
        crate::core::check_name("key", key)?;
        Ok(self.core.store.shard(key).map(|s| &s.log))
    }

    /// The Redis key of a tag in the current generation.
    pub async fn tag_key(&self, tag: &str) -> Result<Key> {
        crate::core::check_name("tag", tag)?;
        let space = self.core.store.space().await?;
        Ok(space.child("tag")?.tagged(tag)?)
    }

    /// The namespace's generation key.
    pub fn generation_key(&self) -> &Key {
        &self.core.store.gen_key
    }

    /// The invalidation channel.
    pub fn channel(&self) -> &str {
        &self.core.store.channel
    }

    /// Whether the invalidation link is up (L1 is served only then).
    pub fn link_up(&self) -> bool {
        self.core.link.is_up()
    }
}

/// Reads entries by full key in one round trip (one per slot on a cluster).
async fn read_batch(redis: &Redis, keys: &[String]) -> redkit_core::Result<Vec<Option<Bytes>>> {
    let values: Vec<Option<Vec<u8>>> = match keys {
        [key] => vec![redis.query(cmd("GET").arg(key)).await?],
        _ if !redis.is_cluster() => redis.query(cmd("MGET").arg(keys)).await?,
        _ => {
            let mut pipe = Pipeline::new();
            for k in keys {
                pipe.cmd(cmd("GET").arg(k).to_owned());
            }
            pipe.query(redis).await?
        }
    };
    Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
}

async fn on_message(
    m: &Message,
    instance: &str,
    link: &Link,
    generation: &Generation,
    base: &Keyspace,
) {
    let p = &m.payload;
    if p.len() < 33 || &p[..32] == instance.as_bytes() {
        return;
    }
    let body = String::from_utf8_lossy(&p[33..]);
    match p[32] {
        b'k' => {
            for key in body.split('\n') {
                link.invalidate(key).await;
            }
        }
        b'g' => {
            if let Ok(g) = body.parse() {
                // a name that passed validation once cannot fail it now
                let _ = generation.observe(g, base);
            }
            link.invalidate_all();
        }
        _ => {}
    }
}

impl RedisStore {
    /// The keyspace of the current generation. While the invalidation link is down the
    /// generation is read every time (a change could not be announced).
    async fn space(&self) -> Result<Arc<Keyspace>> {
        if self.link.is_up()
            && let Some(space) = self.generation.known()
        {
            return Ok(space);
        }
        let resets = self.generation.resets.load(Ordering::SeqCst);
        let g: Option<u64> = self
            .redis
            .query(cmd("GET").arg(self.gen_key.as_str()))
            .await?;
        let g = g.unwrap_or(0);
        if self.link.is_up() && self.generation.resets.load(Ordering::SeqCst) == resets {
            return self.generation.observe(g, &self.base);
        }
        Ok(Arc::new(self.base.child(&format!("g{g}"))?))
    }

    fn message(&self, keys: &[&str]) -> Vec<u8> {
        let mut m = Vec::with_capacity(33 + keys.iter().map(|k| k.len() + 1).sum::<usize>());
        m.extend_from_slice(self.instance.as_bytes());
        m.push(b'k');
        for (i, k) in keys.iter().enumerate() {
            if i > 0 {
                m.push(b'\n');
            }
            m.extend_from_slice(k.as_bytes());
        }
        m
    }

    /// Adds the writes' keys to their tags. Called before the entries are written: an
    /// invalidation that reads a tag after this sees the key, so no tagged entry outlives
    /// an invalidation that follows its write.
    async fn tag(&self, space: &Keyspace, writes: &[Put]) -> Result<()> {
        let mut tags = Pipeline::new();
        for w in writes {
            for t in &w.tags {
                tags.invoke(
                    TAG.call()
                        .key(space.child("tag")?.tagged(t)?.as_str())
                        .arg("add")
                        .arg(ms(w.ttl))
                        .arg(w.key.as_str()),
                );
            }
        }
        if !tags.is_empty() {
            let _: Vec<Value> = tags.query(&self.redis).await?;
        }
        Ok(())
    }

    /// An entry's key: tagged by the key, or with write-behind by its shard (so the
    /// entry and its log share a slot).
    fn entry_key(&self, space: &Keyspace, key: &str) -> Result<Key> {
        self.internal_key(space, key, Role::Entry)
    }

    /// One of the keys of a user key: its entry, its load lock or its fill markers.
    ///
    /// Without write-behind the user key is the hash tag and internal suffixes follow the
    /// closing brace (`…:{<key>}:lock`), where a user key, which has no braces, cannot
    /// reach. With write-behind the shard is the hash tag and the role comes before the
    /// user key (`…:{<ns>#<i>}:e:<key>`, `…:lock:<key>`, `…:fill:<key>`), so no user key
    /// names another key's lock or markers (`foo:lock` is `…:e:foo:lock`, never
    /// `…:lock:foo`).
    fn internal_key(&self, space: &Keyspace, key: &str, role: Role) -> Result<Key> {
        key_of(space, self.shard(key).map(|s| s.tag.as_str()), key, role)
    }

    /// The index of a key's write-behind shard (`None` without write-behind).
    fn shard_index(&self, key: &str) -> Option<usize> {
        let n = u16::try_from(self.shards.len()).ok().filter(|n| *n > 0)?;
        Some(usize::from(shard_of(key, n)))
    }

    fn shard(&self, key: &str) -> Option<&Shard> {
        self.shards.get(self.shard_index(key)?)
    }

    fn shard_at(&self, i: u16) -> Result<&Shard> {
        self.shards
            .get(usize::from(i))
            .ok_or_else(|| Error::InvalidArgument(format!("no write-behind shard {i}")))
    }

    /// Changes entries and logs the changes, one script per shard: `set` with the
    /// entries' bytes, or `del`.
    async fn log(&self, space: &Keyspace, op: &str, items: &[(&str, Option<&Put>)]) -> Result<u64> {
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); self.shards.len()];
        for (n, (key, _)) in items.iter().enumerate() {
            if let Some(group) = self.shard_index(key).and_then(|i| by_shard.get_mut(i)) {
                group.push(n);
            }
        }
        let mut pipe = Pipeline::new();
        for (shard, group) in self.shards.iter().zip(&by_shard) {
            if group.is_empty() {
                continue;
            }
            let names: Vec<&str> = group.iter().map(|&n| items[n].0).collect();
            let mut call = BEHIND.call().key(shard.log.as_str());
            for name in &names {
                call = call
                    .key(self.internal_key(space, name, Role::Entry)?.as_str())
                    .key(self.internal_key(space, name, Role::Fill)?.as_str());
            }
            call = call
                .arg(self.channel.as_str())
                .arg(self.message(&names))
                .arg(op);
            for &n in group {
                let (name, put) = items[n];
                call = call.arg(name);
                if let Some(p) = put {
                    call = call.arg(p.bytes.as_slice()).arg(ms(p.ttl));
                }
            }
            pipe.invoke(call);
        }
        if pipe.is_empty() {
            return Ok(0);
        }
        let counts: Vec<u64> = pipe.query(&self.redis).await?;
        Ok(counts.iter().sum())
    }

    async fn lease_call(&self, shard: u16, token: &str, ttl: Duration, mode: &str) -> Result<bool> {
        let held: i64 = LEASE
            .call()
            .key(self.shard_at(shard)?.owner.as_str())
            .arg(token)
            .arg(ms(ttl))
            .arg(mode)
            .invoke(&self.redis)
            .await?;
        Ok(held == 1)
    }
}

fn unexpected(what: &str) -> Error {
    Error::from(redkit_core::Error::unexpected_reply(what.to_string()))
}

impl Store for RedisStore {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    async fn read(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let space = self.space().await?;
        if let [key] = keys {
            let key = self.entry_key(&space, key)?.into_string();
            return Ok(vec![self.reads.call(key).await?]);
        }
        let full: Vec<String> = keys
            .iter()
            .map(|k| Ok(self.entry_key(&space, k)?.into_string()))
            .collect::<Result<_>>()?;
        Ok(read_batch(&self.redis, &full).await?)
    }

    async fn write(&self, writes: &[Put]) -> Result<()> {
        let space = self.space().await?;
        self.tag(&space, writes).await?;
        let keys: Vec<Key> = writes
            .iter()
            .map(|w| self.entry_key(&space, &w.key))
            .collect::<Result<_>>()?;
        let mut pipe = Pipeline::new();
        for group in self.redis.group_by_slot(&keys, |k| k) {
            let names: Vec<&str> = group.iter().map(|&i| writes[i].key.as_str()).collect();
            let mut call = SET.call();
            for &i in &group {
                call = call.key(keys[i].as_str()).key(
                    self.internal_key(&space, &writes[i].key, Role::Fill)?
                        .as_str(),
                );
            }
            call = call.arg(self.channel.as_str()).arg(self.message(&names));
            for &i in &group {
                call = call.arg(writes[i].bytes.as_slice()).arg(ms(writes[i].ttl));
            }
            pipe.invoke(call);
        }
        let _: Vec<Value> = pipe.query(&self.redis).await?;
        Ok(())
    }

    async fn remove(&self, keys: &[&str]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let space = self.space().await?;
        let full: Vec<Key> = keys
            .iter()
            .map(|k| self.entry_key(&space, k))
            .collect::<Result<_>>()?;
        let mut pipe = Pipeline::new();
        for group in self.redis.group_by_slot(&full, |k| k) {
            let names: Vec<&str> = group.iter().map(|&i| keys[i]).collect();
            let mut call = DELETE.call();
            for &i in &group {
                call = call
                    .key(full[i].as_str())
                    .key(self.internal_key(&space, keys[i], Role::Fill)?.as_str());
            }
            call = call.arg(self.channel.as_str()).arg(self.message(&names));
            pipe.invoke(call);
        }
        let counts: Vec<u64> = pipe.query(&self.redis).await?;
        Ok(counts.iter().sum())
    }

    async fn invalidate_tags(&self, tags: &[&str]) -> Result<(Vec<String>, u64)> {
        if tags.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let space = self.space().await?;
        let mut pipe = Pipeline::new();
        for t in tags {
            pipe.invoke(
                TAG.call()
                    .key(space.child("tag")?.tagged(t)?.as_str())
                    .arg("take"),
            );
        }
        let taken: Vec<Vec<String>> = pipe.query(&self.redis).await?;
        let mut keys: Vec<String> = taken.into_iter().flatten().collect();
        keys.sort();
        keys.dedup();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let existed = self.remove(&refs).await?;
        tracing::debug!(
            tags = tags.len(),
            keys = keys.len(),
            existed,
            "tags invalidated"
        );
        Ok((keys, existed))
    }

    async fn clear(&self) -> Result<()> {
        let mut prefix = self.instance.clone();
        prefix.push('g');
        let generation: u64 = BUMP
            .call()
            .key(self.gen_key.as_str())
            .arg(self.channel.as_str())
            .arg(prefix)
            .invoke(&self.redis)
            .await?;
        self.generation.observe(generation, &self.base)?;
        Ok(())
    }

    async fn begin(
        &self,
        key: &str,
        token: &str,
        lock: Option<Duration>,
        window: Duration,
    ) -> Result<bool> {
        let space = self.space().await?;
        let begun: i64 = BEGIN
            .call()
            .key(self.internal_key(&space, key, Role::Fill)?.as_str())
            .key(self.internal_key(&space, key, Role::Lock)?.as_str())
            .arg(token)
            .arg(ms(window))
            .arg(lock.map(|ttl| ms(ttl).to_string()).unwrap_or_default())
            .invoke(&self.redis)
            .await?;
        Ok(begun == 1)
    }

    async fn fill(&self, write: &Put, token: &str, locked: bool) -> Result<Filled> {
        let space = self.space().await?;
        self.tag(&space, std::slice::from_ref(write)).await?;
        let written: i64 = FILL
            .call()
            .key(self.entry_key(&space, &write.key)?.as_str())
            .key(self.internal_key(&space, &write.key, Role::Fill)?.as_str())
            .key(self.internal_key(&space, &write.key, Role::Lock)?.as_str())
            .arg(token)
            .arg(if locked { "1" } else { "0" })
            .arg(write.bytes.as_slice())
            .arg(ms(write.ttl))
            .arg(self.channel.as_str())
            .arg(self.message(&[&write.key]))
            .invoke(&self.redis)
            .await?;
        match written {
            1 => Ok(Filled::Written),
            0 => Ok(Filled::LockLost),
            2 => Ok(Filled::Superseded),
            _ => Err(unexpected("cache fill")),
        }
    }

    async fn abandon(&self, key: &str, token: &str, locked: bool) -> Result<()> {
        let space = self.space().await?;
        let _: i64 = ABANDON
            .call()
            .key(self.internal_key(&space, key, Role::Fill)?.as_str())
            .key(self.internal_key(&space, key, Role::Lock)?.as_str())
            .arg(token)
            .arg(if locked { "1" } else { "0" })
            .invoke(&self.redis)
            .await?;
        Ok(())
    }

    async fn log_write(&self, writes: &[Put]) -> Result<()> {
        let space = self.space().await?;
        self.tag(&space, writes).await?;
        let items: Vec<(&str, Option<&Put>)> =
            writes.iter().map(|w| (w.key.as_str(), Some(w))).collect();
        self.log(&space, "set", &items).await?;
        Ok(())
    }

    async fn log_remove(&self, keys: &[&str]) -> Result<u64> {
        let space = self.space().await?;
        let items: Vec<(&str, Option<&Put>)> = keys.iter().map(|k| (*k, None)).collect();
        self.log(&space, "del", &items).await
    }

    async fn lease(&self, shard: u16, token: &str, ttl: Duration) -> Result<bool> {
        self.lease_call(shard, token, ttl, "take").await
    }

    async fn renew(&self, shard: u16, token: &str, ttl: Duration) -> Result<bool> {
        self.lease_call(shard, token, ttl, "renew").await
    }

    async fn release(&self, shard: u16, token: &str) -> Result<()> {
        let _: i64 = UNLOCK
            .call()
            .key(self.shard_at(shard)?.owner.as_str())
            .arg(token)
            .invoke(&self.redis)
            .await?;
        Ok(())
    }

    async fn read_log(&self, shard: u16, count: usize) -> Result<Vec<Write>> {
        let log = &self.shard_at(shard)?.log;
        let range: StreamRangeReply = self
            .redis
            .query(
                cmd("XRANGE")
                    .arg(log.as_str())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        let mut out = Vec::with_capacity(range.ids.len());
        let mut gone = Vec::new();
        for entry in range.ids {
            let version = Version::parse(&entry.id).ok_or_else(|| unexpected("log record id"))?;
            match record(&entry.map) {
                Some((key, value)) => out.push(Write::new(key, value, Some(version))),
                // not a write (added by hand): nothing to flush
                None => gone.push(entry.id),
            }
        }
        if !gone.is_empty() {
            let _: i64 = self
                .redis
                .query(cmd("XDEL").arg(log.as_str()).arg(&gone))
                .await?;
        }
        Ok(out)
    }

    async fn settle(
        &self,
        shard: u16,
        token: &str,
        done: &[Version],
        dead: &[DeadWrite],
    ) -> Result<bool> {
        let s = self.shard_at(shard)?;
        let mut call = SETTLE
            .call()
            .key(s.log.as_str())
            .key(s.owner.as_str())
            .key(s.dead.as_str())
            .arg(token)
            .arg("")
            .arg(done.len());
        for v in done {
            call = call.arg(v.to_string());
        }
        for d in dead {
            let id = d.write.version.map(|v| v.to_string()).unwrap_or_default();
            call = call.arg(id).arg(d.write.key.as_str());
            call = match &d.write.value {
                Some(v) => call.arg("v").arg(v.as_ref()),
                None => call.arg("d").arg(""),
            };
            call = call.arg(d.error.as_str()).arg(d.attempts);
        }
        let settled: i64 = call.invoke(&self.redis).await?;
        Ok(settled == 1)
    }

    async fn log_state(&self) -> Result<Vec<LogState>> {
        let mut pipe = Pipeline::new();
        for s in &self.shards {
            pipe.cmd(cmd("XLEN").arg(s.log.as_str()).to_owned());
            pipe.cmd(
                cmd("XRANGE")
                    .arg(s.log.as_str())
                    .arg("-")
                    .arg("+")
                    .arg("COUNT")
                    .arg(1)
                    .to_owned(),
            );
            pipe.cmd(
                cmd("XREVRANGE")
                    .arg(s.log.as_str())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .to_owned(),
            );
        }
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        let replies: Vec<Value> = pipe.query(&self.redis).await?;
        let parse = |v: Value| -> Result<Option<Version>> {
            let r: StreamRangeReply = from_redis_value(v).map_err(|_| unexpected("log range"))?;
            Ok(r.ids.first().and_then(|e| Version::parse(&e.id)))
        };
        let mut out = Vec::with_capacity(self.shards.len());
        let mut it = replies.into_iter();
        while let (Some(len), Some(first), Some(last)) = (it.next(), it.next(), it.next()) {
            out.push(LogState {
                len: from_redis_value(len).map_err(|_| unexpected("log length"))?,
                first: parse(first)?,
                last: parse(last)?,
            });
        }
        Ok(out)
    }

    async fn dead_writes(&self, limit: usize) -> Result<Vec<DeadWrite>> {
        // Redis reads COUNT as a signed 64-bit number; no log holds more entries
        let count = u64::try_from(limit)
            .unwrap_or(u64::MAX)
            .min(i64::MAX as u64);
        let mut out = Vec::new();
        for s in &self.shards {
            let r: StreamRangeReply = self
                .redis
                .query(
                    cmd("XRANGE")
                        .arg(s.dead.as_str())
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(count),
                )
                .await?;
            for entry in r.ids {
                let Some((key, value)) = record(&entry.map) else {
                    continue;
                };
                let text = |f: &str| {
                    entry
                        .map
                        .get(f)
                        .and_then(|v| from_redis_value::<String>(v.clone()).ok())
                };
                let version = text("id").and_then(|id| Version::parse(&id));
                out.push(DeadWrite {
                    write: Write::new(key, value, version),
                    error: text("error").unwrap_or_default(),
                    attempts: text("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
                });
            }
        }
        out.sort_by_key(|d| d.write.version);
        out.truncate(limit);
        Ok(out)
    }
}

/// A log record's key and value (`None`: a removal); `None` for a record without a key.
fn record(map: &HashMap<String, Value>) -> Option<(String, Option<Bytes>)> {
    let key: String = from_redis_value(map.get("k")?.clone()).ok()?;
    let value = match map.get("v") {
        Some(v) => Some(Bytes::from(from_redis_value::<Vec<u8>>(v.clone()).ok()?)),
        None => None,
    };
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_its_keys_and_stays_in_one_slot() {
        for s in [
            &*SET, &*FILL, &*BEGIN, &*ABANDON, &*UNLOCK, &*DELETE, &*TAG, &*BUMP, &*BEHIND,
            &*LEASE, &*SETTLE,
        ] {
            assert!(s.code().starts_with("-- KEYS["), "{}", s.name());
        }
        let base = Keyspace::new("app")
            .unwrap()
            .child("cache")
            .unwrap()
            .child("users")
            .unwrap();
        let g = base.child("g7").unwrap();
        let roles = [Role::Entry, Role::Lock, Role::Fill];
        // an entry, its load lock and its fill markers (set, delete, begin, fill, abandon)
        let keys: Vec<Key> = roles
            .iter()
            .map(|r| key_of(&g, None, "user:1", *r).unwrap())
            .collect();
        redkit_testkit::assert_same_slot(&keys.iter().map(Key::as_str).collect::<Vec<_>>());
        // write-behind: a shard's log, lease, dead letters and entries with their locks
        // and markers (behind, settle, flush reads, and the fills of a write-behind cache)
        for i in [0, 5] {
            let shard = Shard::new(&base, "users", i).unwrap();
            let mut keys = vec![shard.log.clone(), shard.owner.clone(), shard.dead.clone()];
            for k in ["user:1", "user:2", "a:b:c"] {
                for r in roles {
                    keys.push(key_of(&g, Some(&shard.tag), k, r).unwrap());
                }
            }
            let names: Vec<&str> = keys.iter().map(Key::as_str).collect();
            redkit_testkit::assert_same_slot(&names);
        }
        // keys of one slot group land in one script call (checked by group_by_slot);
        // the tag, generation and lease scripts touch one key each
        for one in [&*TAG, &*BUMP, &*UNLOCK, &*LEASE] {
            assert!(!one.code().contains("KEYS[2]"), "{}", one.name());
        }
        for two in [&*BEGIN, &*ABANDON] {
            assert!(!two.code().contains("KEYS[3]"), "{}", two.name());
        }
        assert!(!FILL.code().contains("KEYS[4]") && !SETTLE.code().contains("KEYS[4]"));
    }

    #[test]
    fn no_user_key_names_another_keys_lock_or_markers() {
        let g = Keyspace::new("app").unwrap().child("g1").unwrap();
        let names = [
            "foo", "foo:lock", "foo:fill", "lock:foo", "fill:foo", "e:foo", "foo:e", "lock",
            "fill", "e", ":", "a:", ":lock",
        ];
        for tag in [None, Some("ns#0")] {
            let mut seen = std::collections::HashMap::new();
            for name in names {
                for role in [Role::Entry, Role::Lock, Role::Fill] {
                    let key = key_of(&g, tag, name, role).unwrap().into_string();
                    if let Some(other) = seen.insert(key.clone(), (name, role)) {
                        panic!("{key}: both {other:?} and {:?}", (name, role));
                    }
                }
            }
        }
    }
}
