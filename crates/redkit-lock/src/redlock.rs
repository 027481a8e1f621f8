//! [`Redlock`]: one lock over several independent Redis servers.
//!
//! Use it when no single Redis server may be a single point of failure for the lock *and*
//! the servers fail independently (no replication between them). It takes the lock on a
//! majority of servers within a short per-server timeout, and counts the lock as held
//! only for `ttl - time spent acquiring - drift`. It does not make a TTL lock safe
//! against pauses of the holder: only fencing does, and Redlock's fencing tokens (the
//! largest counter among the servers that granted the lock) are not guaranteed to grow
//! across holders the way a single server's are. Servers restarted without persistence
//! (`appendfsync always`) or a delay of one TTL can grant the same lock twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::{join_all, select_all};
use redkit_core::{Keyspace, Redis};

use crate::backend::{self, Attempt, Backend, Waiter};
use crate::redis::RedisBackend;
use crate::{AcquireOptions, Error, Lock, LockGuard, Result};

/// A lock held on a majority of independent Redis servers.
#[derive(Debug, Clone)]
pub struct Redlock {
    backend: Arc<dyn Backend>,
}

/// Builds a [`Redlock`].
#[derive(Debug)]
pub struct RedlockBuilder {
    nodes: Vec<Redis>,
    prefix: String,
    node_timeout: Duration,
    allow_eviction: bool,
}

impl Redlock {
    /// A builder over these servers (use an odd number, 3 or 5).
    pub fn builder(nodes: impl IntoIterator<Item = Redis>) -> RedlockBuilder {
        RedlockBuilder {
            nodes: nodes.into_iter().collect(),
            prefix: "redkit".to_string(),
            node_timeout: Duration::from_millis(200),
            allow_eviction: false,
        }
    }
}

impl RedlockBuilder {
    /// The key prefix on every server.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one server may take to answer one step (default 200 ms); keep it well
    /// below the TTLs you use.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Accept servers whose `maxmemory-policy` may evict keys (default: refused; see
    /// [`RedisLockBuilder::allow_eviction`](crate::RedisLockBuilder::allow_eviction)).
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// Checks the settings and every server's eviction policy, and builds the lock.
    pub fn build(self) -> Result<Redlock> {
        if self.nodes.is_empty() {
            return Err(Error::InvalidArgument(
                "redlock needs at least one server".into(),
            ));
        }
        if self.node_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "node_timeout must be greater than zero".into(),
            ));
        }
        crate::check_duration("node_timeout", self.node_timeout)?;
        let root = Keyspace::new(&self.prefix)?;
        if !self.allow_eviction {
            for node in &self.nodes {
                node.ensure_no_eviction(
                    "lock",
                    "a server can grant a lock that is still held on it",
                )?;
            }
        }
        let quorum = self.nodes.len() / 2 + 1;
        let nodes = self
            .nodes
            .into_iter()
            .map(|r| RedisBackend::mutex(r, &root, false, true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Redlock {
            backend: Arc::new(RedlockBackend {
                nodes,
                quorum,
                node_timeout: self.node_timeout,
            }),
        })
    }
}

#[derive(Debug)]
struct RedlockBackend {
    nodes: Vec<RedisBackend>,
    quorum: usize,
    node_timeout: Duration,
}

impl RedlockBackend {
    /// Runs one step on every server at once, each bounded by the node timeout.
    async fn on_all<'a, T, F, Fut>(&'a self, step: F) -> Vec<Result<T>>
    where
        F: Fn(&'a RedisBackend) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        let limit = self.node_timeout;
        join_all(self.nodes.iter().map(|n| {
            let fut = step(n);
            async move {
                tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
                    Err(Error::Core(redkit_core::Error::Timeout(format!(
                        "redlock server did not answer within {limit:?}"
                    ))))
                })
            }
        }))
        .await
    }

    /// The first error, when errors leave too few servers for a quorum.
    fn unreachable<T>(&self, results: &mut Vec<Result<T>>) -> Option<Error> {
        let errors = results.iter().filter(|r| r.is_err()).count();
        if errors > self.nodes.len() - self.quorum {
            let first = results.iter().position(|r| r.is_err())?;
            return results.swap_remove(first).err();
        }
        None
    }
}

#[async_trait]
impl Backend for RedlockBackend {
    async fn try_lock(&self, resource: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        let start = Instant::now();
        let mut results = self.on_all(|n| n.try_lock(resource, token, ttl)).await;
        let mut granted = 0;
        let mut fence = 0;
        let mut retry_after: Option<Duration> = None;
        for r in &results {
            match r {
                Ok(Attempt::Acquired { fence: f }) => {
                    granted += 1;
                    fence = fence.max(*f);
                }
                Ok(Attempt::Busy {
                    retry_after: Some(d),
                }) => {
                    retry_after = Some(retry_after.map_or(*d, |r| r.min(*d)));
                }
                _ => {}
            }
        }
        let drift = ttl / 100 + Duration::from_millis(2);
        if granted >= self.quorum && start.elapsed() + drift < ttl {
            return Ok(Attempt::Acquired { fence });
        }
        // No quorum (or no time left): undo what was taken, everywhere.
        if granted > 0 {
            let _ = self.on_all(|n| n.release(resource, token)).await;
        }
        if let Some(e) = self.unreachable(&mut results) {
            return Err(e);
        }
        Ok(Attempt::Busy { retry_after })
    }

    async fn extend(&self, resource: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut results = self.on_all(|n| n.extend(resource, token, ttl)).await;
        let extended = results.iter().filter(|r| matches!(r, Ok(true))).count();
        if extended >= self.quorum {
            return Ok(true);
        }
        if let Some(e) = self.unreachable(&mut results) {
            return Err(e);
        }
        Ok(false)
    }

    async fn release(&self, resource: &str, token: &str) -> Result<bool> {
        let mut results = self.on_all(|n| n.release(resource, token)).await;
        let released = results.iter().filter(|r| matches!(r, Ok(true))).count();
        if released >= self.quorum {
            return Ok(true);
        }
        if let Some(e) = self.unreachable(&mut results) {
            return Err(e);
        }
        Ok(false)
    }

    async fn remaining(&self, resource: &str, token: &str) -> Result<Option<Duration>> {
        let mut results = self.on_all(|n| n.remaining(resource, token)).await;
        let mut held: Vec<Duration> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied().flatten())
            .collect();
        if held.len() >= self.quorum {
            held.sort();
            // The quorum holds the lock for at least the quorum-th longest remaining TTL.
            return Ok(Some(held[held.len() - self.quorum]));
        }
        if let Some(e) = self.unreachable(&mut results) {
            return Err(e);
        }
        Ok(None)
    }

    async fn listen(&self, resource: &str) -> Result<Box<dyn Waiter>> {
        let mut waiters = Vec::new();
        let mut last = None;
        for r in self.on_all(|n| n.listen(resource)).await {
            match r {
                Ok(w) => waiters.push(w),
                Err(e) => last = Some(e),
            }
        }
        match (waiters.is_empty(), last) {
            (true, Some(e)) => Err(e),
            _ => Ok(Box::new(AnyWaiter(waiters))),
        }
    }
}

/// Wakes when any server reports a release.
struct AnyWaiter(Vec<Box<dyn Waiter>>);

#[async_trait]
impl Waiter for AnyWaiter {
    async fn wait(&mut self) {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        let _ = select_all(self.0.iter_mut().map(|w| w.wait())).await;
    }
}

#[async_trait]
impl Lock for Redlock {
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        backend::try_acquire(&self.backend, resource, AcquireOptions::new(ttl)).await
    }

    async fn acquire(&self, resource: &str, options: AcquireOptions) -> Result<LockGuard> {
        backend::acquire(&self.backend, resource, options).await
    }
}
