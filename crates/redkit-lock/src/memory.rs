//! [`MemoryLock`]: the same lock inside one process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Clock, Keyspace, SystemClock};
use tokio::sync::broadcast;

use crate::backend::{self, Attempt, Backend, Waiter};
use crate::{AcquireOptions, Lock, LockGuard, Result};

/// Locks held in this process's memory, with the same semantics as [`crate::RedisLock`]
/// (owner tokens, fencing tokens, expiry, release notifications) but no sharing across
/// processes. Expiry follows the configured [`Clock`], so tests can move time by hand with
/// a [`redkit_core::ManualClock`]; [`LockGuard::lost`] follows the real monotonic clock.
#[derive(Debug, Clone)]
pub struct MemoryLock {
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
        MemoryLock {
            backend: Arc::new(MemoryBackend {
                clock: self.clock,
                state: Mutex::new(State::default()),
                released,
            }),
        }
    }
}

#[derive(Default, Debug)]
struct State {
    held: HashMap<String, (String, Duration)>,
    fences: HashMap<String, u64>,
}

#[derive(Debug)]
struct MemoryBackend {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    released: broadcast::Sender<String>,
}

impl MemoryBackend {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owner and remaining TTL of a live lock.
    fn live<'a>(&self, state: &'a State, resource: &str) -> Option<(&'a str, Duration)> {
        let now = self.clock.now();
        state
            .held
            .get(resource)
            .filter(|(_, expires)| *expires > now)
            .map(|(token, expires)| (token.as_str(), *expires - now))
    }
}

/// Names are checked exactly as the Redis backend checks them.
fn check_name(resource: &str) -> Result<()> {
    Keyspace::new("memory")?.tagged(resource)?;
    Ok(())
}

#[async_trait]
impl Backend for MemoryBackend {
    fn validate(&self, resource: &str) -> Result<()> {
        check_name(resource)
    }

    async fn try_lock(&self, resource: &str, token: &str, ttl: Duration) -> Result<Attempt> {
        let mut state = self.state();
        if let Some((_, left)) = self.live(&state, resource) {
            return Ok(Attempt::Busy {
                retry_after: Some(left),
            });
        }
        let expires = self.clock.now() + ttl;
        state
            .held
            .insert(resource.to_string(), (token.to_string(), expires));
        let fence = state.fences.entry(resource.to_string()).or_insert(0);
        *fence += 1;
        Ok(Attempt::Acquired { fence: *fence })
    }

    async fn extend(&self, resource: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut state = self.state();
        if self
            .live(&state, resource)
            .is_some_and(|(owner, _)| owner == token)
        {
            let expires = self.clock.now() + ttl;
            state
                .held
                .insert(resource.to_string(), (token.to_string(), expires));
            return Ok(true);
        }
        Ok(false)
    }

    async fn release(&self, resource: &str, token: &str) -> Result<bool> {
        let mut state = self.state();
        if self
            .live(&state, resource)
            .is_some_and(|(owner, _)| owner == token)
        {
            state.held.remove(resource);
            let _ = self.released.send(resource.to_string());
            return Ok(true);
        }
        Ok(false)
    }

    async fn remaining(&self, resource: &str, token: &str) -> Result<Option<Duration>> {
        let state = self.state();
        Ok(self
            .live(&state, resource)
            .filter(|(owner, _)| *owner == token)
            .map(|(_, left)| left))
    }

    async fn listen(&self, resource: &str) -> Result<Box<dyn Waiter>> {
        Ok(Box::new(MemoryWaiter {
            resource: resource.to_string(),
            rx: self.released.subscribe(),
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
