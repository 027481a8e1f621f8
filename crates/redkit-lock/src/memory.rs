//! [`MemoryLock`]: the same lock inside one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Clock, Keyspace, SystemClock};
use tokio::sync::broadcast;

use crate::backend::{self, Attempt, Backend, Waiter};
use crate::redis::Kind;
use crate::{AcquireOptions, Lock, LockGuard, Result};

/// Locks held in this process's memory, with the same semantics as [`crate::RedisLock`]
/// (owner tokens, fencing tokens, expiry, release notifications, read-write and semaphore
/// views) but no sharing across processes. Expiry follows the configured [`Clock`], so
/// tests can move time by hand with a [`redkit_core::ManualClock`]; [`LockGuard::lost`]
/// follows the real monotonic clock.
#[derive(Debug, Clone)]
pub struct MemoryLock {
    shared: Arc<Shared>,
    backend: Arc<dyn Backend>,
}

/// Builds a [`MemoryLock`].
#[derive(Debug)]
pub struct MemoryLockBuilder {
    clock: Arc<dyn Clock>,
}

impl MemoryLock {
    /// A builder using the system clock.
    pub fn builder() -> MemoryLockBuilder {
        MemoryLockBuilder {
            clock: Arc::new(SystemClock),
        }
    }

    fn sibling(&self, kind: Kind) -> MemoryLock {
        MemoryLock {
            shared: Arc::clone(&self.shared),
            backend: Arc::new(MemoryBackend {
                shared: Arc::clone(&self.shared),
                kind,
            }),
        }
    }

    /// The shared side of a read-write lock (see [`crate::RedisLock::read`]).
    pub fn read(&self) -> MemoryLock {
        self.sibling(Kind::Read)
    }

    /// The exclusive side of a read-write lock (see [`crate::RedisLock::write`]).
    pub fn write(&self) -> MemoryLock {
        self.sibling(Kind::Write)
    }

    /// A counting semaphore (see [`crate::RedisLock::semaphore`]).
    pub fn semaphore(&self, permits: u32) -> Result<MemoryLock> {
        Ok(self.sibling(Kind::semaphore(permits)?))
    }
}

impl Default for MemoryLock {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl MemoryLockBuilder {
    /// The clock that decides expiry.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the lock.
    pub fn build(self) -> MemoryLock {
        let (released, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            clock: self.clock,
            state: Mutex::new(State::default()),
            released,
        });
        MemoryLock {
            backend: Arc::new(MemoryBackend {
                shared: Arc::clone(&shared),
                kind: Kind::Mutex,
            }),
            shared,
        }
    }
}

/// The holders of one resource: one exclusive holder, or shared ones (readers, permits).
#[derive(Default, Debug)]
struct Holds {
    exclusive: Option<(String, Duration)>,
    shared: HashMap<String, Duration>,
    /// Writers waiting for a read-write lock: token -> end of the intent.
    waiting: HashMap<String, Duration>,
}

impl Holds {
    fn prune(&mut self, now: Duration) {
        if self.exclusive.as_ref().is_some_and(|(_, exp)| *exp <= now) {
            self.exclusive = None;
        }
        self.shared.retain(|_, exp| *exp > now);
        self.waiting.retain(|_, exp| *exp > now);
    }

    /// The expiry of `token`'s hold of the given kind.
    fn expiry_mut(&mut self, kind: Kind, token: &str) -> Option<&mut Duration> {
        if kind.exclusive() {
            self.exclusive
                .as_mut()
                .filter(|(owner, _)| owner == token)
                .map(|(_, exp)| exp)
        } else {
            self.shared.get_mut(token)
        }
    }
}

#[derive(Default, Debug)]
struct State {
    holds: HashMap<String, Holds>,
    fences: HashMap<String, u64>,
}

#[derive(Debug)]
struct Shared {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    released: broadcast::Sender<String>,
}

#[derive(Debug)]
struct MemoryBackend {
    shared: Arc<Shared>,
    kind: Kind,
}

impl MemoryBackend {
    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state key: kinds live in separate namespaces, as on Redis.
    fn key(&self, resource: &str) -> String {
        let ns = match self.kind {
            Kind::Mutex => "lock",
            Kind::Read | Kind::Write => "rw",
            Kind::Permits(_) => "sem",
        };
        format!("{ns}/{resource}")
    }

    /// Runs `f` on the pruned holders and the fencing counter of `resource`, under one
    /// lock of the state.
    fn with_holds<T>(
        &self,
        resource: &str,
        f: impl FnOnce(&mut Holds, &mut u64, Duration) -> T,
    ) -> T {
        let now = self.shared.clock.now();
        let key = self.key(resource);
        let mut state = self.state();
        let State { holds, fences } = &mut *state;
        let holds = holds.entry(key.clone()).or_default();
        holds.prune(now);
        f(holds, fences.entry(key).or_insert(0), now)
    }

    /// One attempt; a writer that will wait records an intent of `intent`.
    fn attempt(
        &self,
        resource: &str,
        token: &str,
        ttl: Duration,
        intent: Option<Duration>,
    ) -> Result<Attempt> {
        check_name(resource)?;
        let kind = self.kind;
        self.with_holds(resource, |holds, fence, now| {
            let left = |exp: Duration| Some(exp.saturating_sub(now));
            let busy = |holds: &mut Holds, retry_after| {
                if let Some(intent) = intent {
                    holds.waiting.insert(token.to_string(), now + intent);
                }
                Ok(Attempt::Busy { retry_after })
            };
            if let Some((_, exp)) = holds.exclusive.clone() {
                return busy(holds, left(exp));
            }
            if kind == Kind::Read
                && let Some(end) = holds.waiting.values().max().copied()
            {
                return busy(holds, left(end));
            }
            match kind {
                Kind::Mutex | Kind::Write if !holds.shared.is_empty() => {
                    let end = holds.shared.values().max().and_then(|e| left(*e));
                    busy(holds, end)
                }
                Kind::Permits(n) if holds.shared.len() >= n as usize => {
                    let end = holds.shared.values().min().and_then(|e| left(*e));
                    busy(holds, end)
                }
                _ => {
                    holds.waiting.remove(token);
                    if kind.exclusive() {
                        holds.exclusive = Some((token.to_string(), now + ttl));
                    } else {
                        holds.shared.insert(token.to_string(), now + ttl);
                    }
                    *fence += 1;
                    Ok(Attempt::Acquired { fence: *fence })
                }
            }
        })
    }
}

/// Names are checked exactly as the Redis backend checks them.
fn check_name(resource: &str) -> Result<()> {
    Keyspace::new("memory")?.tagged(resource)?;
    Ok(())
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn try_lock(&self, resource: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        self.attempt(resource, token, ttl, None)
    }

    async fn try_lock_waiting(
        &self,
        resource: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Attempt> {
        let intent = (self.kind == Kind::Write).then_some(crate::backend::writer_intent());
        self.attempt(resource, token, ttl, intent)
    }

    async fn withdraw(&self, resource: &str, token: &str) -> Result<()> {
        self.with_holds(resource, |holds, _, _| holds.waiting.remove(token));
        Ok(())
    }

    async fn extend(&self, resource: &str, token: &str, ttl: Duration) -> Result<bool> {
        let kind = self.kind;
        Ok(self.with_holds(resource, |holds, _, now| {
            holds
                .expiry_mut(kind, token)
                .map(|exp| *exp = now + ttl)
                .is_some()
        }))
    }

    async fn release(&self, resource: &str, token: &str) -> Result<bool> {
        let kind = self.kind;
        let released = self.with_holds(resource, |holds, _, _| {
            if kind.exclusive() {
                holds
                    .exclusive
                    .take_if(|(owner, _)| owner == token)
                    .is_some()
            } else {
                holds.shared.remove(token).is_some()
            }
        });
        if released {
            let _ = self.shared.released.send(self.key(resource));
        }
        Ok(released)
    }

    async fn remaining(&self, resource: &str, token: &str) -> Result<Option<Duration>> {
        let kind = self.kind;
        Ok(self.with_holds(resource, |holds, _, now| {
            holds
                .expiry_mut(kind, token)
                .map(|exp| exp.saturating_sub(now))
        }))
    }

    async fn listen(&self, resource: &str) -> Result<Box<dyn Waiter>> {
        Ok(Box::new(MemoryWaiter {
            resource: self.key(resource),
            rx: self.shared.released.subscribe(),
        }))
    }
}

struct MemoryWaiter {
    resource: String,
    rx: broadcast::Receiver<String>,
}

#[async_trait]
impl Waiter for MemoryWaiter {
    async fn wait(&mut self) {
        loop {
            match self.rx.recv().await {
                Ok(name) if name == self.resource => return,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

#[async_trait]
impl Lock for MemoryLock {
    async fn try_acquire(&self, resource: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        backend::try_acquire(&self.backend, resource, AcquireOptions::new(ttl)).await
    }

    async fn acquire(&self, resource: &str, options: AcquireOptions) -> Result<LockGuard> {
        backend::acquire(&self.backend, resource, options).await
    }
}

/// An all-or-none hold on several resources of a group (see [`crate::LockAll`]).
#[derive(Debug)]
struct MultiBackend {
    shared: Arc<Shared>,
    resources: Vec<String>,
}

impl MultiBackend {
    fn keys(&self, group: &str) -> Vec<String> {
        self.resources
            .iter()
            .map(|r| format!("multi/{group}/{r}"))
            .collect()
    }

    /// Runs `f` on the pruned holds of every resource (and the group's fencing counter)
    /// under one lock of the state.
    fn with_all<T>(
        &self,
        group: &str,
        f: impl FnOnce(Vec<&mut Holds>, &mut u64, Duration) -> T,
    ) -> T {
        let now = self.shared.clock.now();
        let keys = self.keys(group);
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let State { holds, fences } = &mut *state;
        for k in &keys {
            holds.entry(k.clone()).or_default().prune(now);
        }
        let all: Vec<&mut Holds> = holds
            .iter_mut()
            .filter(|(k, _)| keys.contains(k))
            .map(|(_, h)| h)
            .collect();
        f(
            all,
            fences.entry(format!("multi/{group}")).or_insert(0),
            now,
        )
    }
}

fn owns(h: &Holds, token: &str) -> bool {
    h.exclusive
        .as_ref()
        .is_some_and(|(owner, _)| owner == token)
}

#[async_trait]
impl Backend for MultiBackend {
    async fn try_lock(&self, group: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        check_name(group)?;
        self.with_all(group, |mut all, fence, now| {
            if let Some((_, exp)) = all.iter().find_map(|h| h.exclusive.as_ref()) {
                return Ok(Attempt::Busy {
                    retry_after: Some(exp.saturating_sub(now)),
                });
            }
            for h in all.iter_mut() {
                h.exclusive = Some((token.to_string(), now + ttl));
            }
            *fence += 1;
            Ok(Attempt::Acquired { fence: *fence })
        })
    }

    async fn extend(&self, group: &str, token: &str, ttl: Duration) -> Result<bool> {
        Ok(self.with_all(group, |mut all, _, now| {
            if !all.iter().all(|h| owns(h, token)) {
                return false;
            }
            for h in all.iter_mut() {
                h.exclusive = Some((token.to_string(), now + ttl));
            }
            true
        }))
    }

    async fn release(&self, group: &str, token: &str) -> Result<bool> {
        let (owned, total) = self.with_all(group, |mut all, _, _| {
            let total = all.len();
            let mut owned = 0;
            for h in all.iter_mut() {
                if owns(h, token) {
                    h.exclusive = None;
                    owned += 1;
                }
            }
            (owned, total)
        });
        if owned > 0 {
            let _ = self.shared.released.send(format!("multi/{group}"));
        }
        Ok(owned == total)
    }

    async fn remaining(&self, group: &str, token: &str) -> Result<Option<Duration>> {
        Ok(self.with_all(group, |all, _, now| {
            if !all.iter().all(|h| owns(h, token)) {
                return None;
            }
            all.iter()
                .filter_map(|h| h.exclusive.as_ref().map(|(_, exp)| exp.saturating_sub(now)))
                .min()
        }))
    }

    async fn listen(&self, group: &str) -> Result<Box<dyn Waiter>> {
        Ok(Box::new(MemoryWaiter {
            resource: format!("multi/{group}"),
            rx: self.shared.released.subscribe(),
        }))
    }
}

impl MemoryLock {
    /// A backend that takes all of `resources` or none.
    fn all_of(&self, resources: &[&str]) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(MultiBackend {
            shared: Arc::clone(&self.shared),
            resources: crate::redis::check_resources(resources)?,
        }))
    }
}

#[async_trait]
impl crate::LockAll for MemoryLock {
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
