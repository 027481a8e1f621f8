//! [`RedisLock`]: the lock on Redis, one Lua script per atomic step.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Event, Key, Keyspace, Redis, Script, Subscription};
use tracing::Instrument;

use crate::backend::{self, Attempt, Backend, Waiter};
use crate::{AcquireOptions, Lock, LockGuard, Result};

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new("acquire", include_str!("../lua/acquire.lua")));
static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new("extend", include_str!("../lua/extend.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new("release", include_str!("../lua/release.lua")));
static HELD: LazyLock<Script> =
    LazyLock::new(|| Script::new("held", include_str!("../lua/held.lua")));

/// Locks on Redis (standalone, cluster or sentinel).
///
/// Keys for resource `r` under prefix `p`: `p:lock:{r}` holds the owner token with the
/// TTL, `p:lock:{r}:fence` the fencing counter (never expires), both on one hash tag.
/// Releases publish on channel `p:lock:{r}:released`, which waiters listen to.
#[derive(Debug, Clone)]
pub struct RedisLock {
    backend: Arc<dyn Backend>,
}

/// Builds a [`RedisLock`].
#[derive(Debug)]
pub struct RedisLockBuilder {
    redis: Redis,
    prefix: String,
}

impl RedisLock {
    /// A builder; the key prefix defaults to `redkit`.
    pub fn builder(redis: Redis) -> RedisLockBuilder {
        RedisLockBuilder {
            redis,
            prefix: "redkit".to_string(),
        }
    }
}

impl RedisLockBuilder {
    /// The key prefix (`<prefix>:lock:{resource}`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Checks the prefix and builds the lock.
    pub fn build(self) -> Result<RedisLock> {
        let keys = Keyspace::new(&self.prefix)?.child("lock")?;
        Ok(RedisLock {
            backend: Arc::new(RedisBackend {
                redis: self.redis,
                keys,
            }),
        })
    }
}

#[derive(Debug)]
struct RedisBackend {
    redis: Redis,
    keys: Keyspace,
}

impl RedisBackend {
    fn key(&self, resource: &str) -> Result<Key> {
        Ok(self.keys.tagged(resource)?)
    }
}

/// The keys one resource uses: lock and fencing counter, on one hash tag.
pub(crate) fn keys(keys: &Keyspace, resource: &str) -> Result<(Key, Key)> {
    let lock = keys.tagged(resource)?;
    let fence = lock.child("fence")?;
    Ok((lock, fence))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Backend for RedisBackend {
    fn validate(&self, resource: &str) -> Result<()> {
        self.key(resource).map(|_| ())
    }

    async fn try_lock(&self, resource: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        let (lock, fence) = keys(&self.keys, resource)?;
        let (ok, n): (i64, i64) = ACQUIRE
            .call()
            .key(&lock)
            .key(&fence)
            .arg(token)
            .arg(ms(ttl))
            .invoke(&self.redis)
            .await?;
        Ok(if ok == 1 {
            Attempt::Acquired {
                fence: u64::try_from(n).unwrap_or(0),
            }
        } else {
            Attempt::Busy {
                retry_after: u64::try_from(n).ok().map(Duration::from_millis),
            }
        })
    }

    async fn extend(&self, resource: &str, token: &str, ttl: Duration) -> Result<bool> {
        let lock = self.key(resource)?;
        let ok: i64 = EXTEND
            .call()
            .key(&lock)
            .arg(token)
            .arg(ms(ttl))
            .invoke(&self.redis)
            .await?;
        Ok(ok == 1)
    }

    async fn release(&self, resource: &str, token: &str) -> Result<bool> {
        let lock = self.key(resource)?;
        let channel = format!("{lock}:released");
        let ok: i64 = RELEASE
            .call()
            .key(&lock)
            .arg(token)
            .arg(channel)
            .invoke(&self.redis)
            .await?;
        Ok(ok == 1)
    }

    async fn remaining(&self, resource: &str, token: &str) -> Result<Option<Duration>> {
        let lock = self.key(resource)?;
        let left: i64 = HELD
            .call()
            .key(&lock)
            .arg(token)
            .invoke(&self.redis)
            .await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    async fn listen(&self, resource: &str) -> Result<Box<dyn Waiter>> {
        let lock = self.key(resource)?;
        let sub = self.redis.subscribe(&format!("{lock}:released")).await?;
        Ok(Box::new(RedisWaiter(sub)))
    }
}

struct RedisWaiter(Subscription);

#[async_trait]
impl Waiter for RedisWaiter {
    async fn wait(&mut self) {
        // A message, a disconnect or a lag all mean: look at the lock again.
        match self.0.recv().await {
            Some(
                Event::Message(_)
                | Event::Disconnected
                | Event::Resubscribed
                | Event::Lagged { .. },
            ) => {}
            Some(_) => {}
            None => std::future::pending::<()>().await,
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
        let ks = Keyspace::new("app").unwrap().child("lock").unwrap();
        for resource in ["orders:42", "a", "user:{x"] {
            let Ok((lock, fence)) = keys(&ks, resource) else {
                assert!(resource.contains('{'));
                continue;
            };
            assert!(redkit_core::same_slot(&[lock.as_str(), fence.as_str()]));
        }
    }

    #[test]
    fn scripts_have_headers() {
        for s in [&*ACQUIRE, &*EXTEND, &*RELEASE, &*HELD] {
            assert!(s.code().starts_with("-- KEYS"), "{}", s.name());
        }
    }
}
