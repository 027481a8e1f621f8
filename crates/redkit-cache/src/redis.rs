//! The Redis backend: entries as strings under a namespace generation, tags as sorted
//! sets, invalidation messages on one channel per namespace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redkit_core::redis::{Value, cmd};
use redkit_core::{Coalescer, Key, Keyspace, Pipeline, Redis, Script};
use redkit_core::{Event, Message};

use crate::core::Core;
use crate::store::{Link, Store, Write, ms};
use crate::{CacheConfig, Error, Result, delegate_cache};

static SET: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_set", include_str!("../lua/set.lua")));
static FILL: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_fill", include_str!("../lua/fill.lua")));
static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_unlock", include_str!("../lua/unlock.lua")));
static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_delete", include_str!("../lua/delete.lua")));
static TAG: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_tag", include_str!("../lua/tag.lua")));
static BUMP: LazyLock<Script> =
    LazyLock::new(|| Script::new("cache_bump", include_str!("../lua/bump.lua")));

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
    _listener: Listener,
}

/// A cache on Redis (standalone, sentinel or cluster), optionally with an in-process L1.
///
/// Keys: entries `<prefix>:cache:<ns>:g<n>:{<key>}` (strings: a 22-byte header and the
/// value), load locks `…:{<key>}:lock`, tags `<prefix>:cache:<ns>:g<n>:tag:{<tag>}`,
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
            tokio::spawn(async move {
                while let Some(event) = sub.recv().await {
                    match event {
                        Event::Message(m) => {
                            on_message(&m, &instance, &link, &generation, &base).await
                        }
                        Event::Disconnected | Event::Lagged { .. } => {
                            tracing::debug!("cache invalidation link lost; L1 cleared");
                            generation.reset();
                            link.set_up(false);
                        }
                        Event::Resubscribed => {
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
        let store = RedisStore {
            reads,
            redis: redis.clone(),
            base,
            gen_key,
            channel,
            instance,
            generation,
            link: Arc::clone(&link),
            _listener: Listener(listener),
        };
        Ok(RedisCache {
            core: Arc::new(Core::new(store, config, link)),
        })
    }

    /// The Redis key of an entry in the current generation (for inspection and tests).
    pub async fn entry_key(&self, key: &str) -> Result<Key> {
        crate::core::check_name("key", key)?;
        let space = self.core.store.space().await?;
        Ok(space.tagged(key)?)
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
    async fn tag(&self, space: &Keyspace, writes: &[Write]) -> Result<()> {
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

    fn lock_key(space: &Keyspace, key: &str) -> Result<Key> {
        Ok(space.tagged_child(key, "lock")?)
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
            let key = space.tagged(key)?.into_string();
            return Ok(vec![self.reads.call(key).await?]);
        }
        let full: Vec<String> = keys
            .iter()
            .map(|k| Ok(space.tagged(k)?.into_string()))
            .collect::<Result<_>>()?;
        Ok(read_batch(&self.redis, &full).await?)
    }

    async fn write(&self, writes: &[Write]) -> Result<()> {
        let space = self.space().await?;
        self.tag(&space, writes).await?;
        let keys: Vec<Key> = writes
            .iter()
            .map(|w| space.tagged(&w.key))
            .collect::<redkit_core::Result<_>>()?;
        let mut pipe = Pipeline::new();
        for group in self.redis.group_by_slot(&keys, |k| k) {
            let names: Vec<&str> = group.iter().map(|&i| writes[i].key.as_str()).collect();
            let mut call = SET.call();
            for &i in &group {
                call = call.key(keys[i].as_str());
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
            .map(|k| space.tagged(k))
            .collect::<redkit_core::Result<_>>()?;
        let mut pipe = Pipeline::new();
        for group in self.redis.group_by_slot(&full, |k| k) {
            let names: Vec<&str> = group.iter().map(|&i| keys[i]).collect();
            let mut call = DELETE.call();
            for &i in &group {
                call = call.key(full[i].as_str());
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

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let space = self.space().await?;
        let reply: Option<String> = self
            .redis
            .query(
                cmd("SET")
                    .arg(Self::lock_key(&space, key)?.as_str())
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms(ttl)),
            )
            .await?;
        Ok(reply.is_some())
    }

    async fn fill(&self, write: &Write, token: &str) -> Result<bool> {
        let space = self.space().await?;
        let entry = space.tagged(&write.key)?;
        let lock = Self::lock_key(&space, &write.key)?;
        self.tag(&space, std::slice::from_ref(write)).await?;
        let written: i64 = FILL
            .call()
            .key(entry.as_str())
            .key(lock.as_str())
            .arg(token)
            .arg(write.bytes.as_slice())
            .arg(ms(write.ttl))
            .arg(self.channel.as_str())
            .arg(self.message(&[&write.key]))
            .invoke(&self.redis)
            .await?;
        match written {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(unexpected("cache fill")),
        }
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<()> {
        let space = self.space().await?;
        let _: i64 = UNLOCK
            .call()
            .key(Self::lock_key(&space, key)?.as_str())
            .arg(token)
            .invoke(&self.redis)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_its_keys_and_stays_in_one_slot() {
        for s in [&*SET, &*FILL, &*UNLOCK, &*DELETE, &*TAG, &*BUMP] {
            assert!(s.code().starts_with("-- KEYS["), "{}", s.name());
        }
        let space = Keyspace::new("app")
            .unwrap()
            .child("cache")
            .unwrap()
            .child("users")
            .unwrap();
        let g = space.child("g7").unwrap();
        let entry = g.tagged("user:1").unwrap();
        let lock = RedisStore::lock_key(&g, "user:1").unwrap();
        redkit_testkit::assert_same_slot(&[entry.as_str(), lock.as_str()]);
        // keys of one slot group land in one script call (checked by group_by_slot);
        // the tag and generation scripts touch one key each
        assert!(!TAG.code().contains("KEYS[2]") && !BUMP.code().contains("KEYS[2]"));
        assert!(!UNLOCK.code().contains("KEYS[2]") && !FILL.code().contains("KEYS[3]"));
    }
}
