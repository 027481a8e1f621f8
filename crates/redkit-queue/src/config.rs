//! Queue options.

use std::time::Duration;

use crate::job::{Backoff, check_name};
use crate::{Error, Result};

/// The largest batch one call enqueues, fetches or completes.
pub const MAX_BATCH: usize = 1000;

/// How long finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// Deleted at once.
    None,
    /// Kept until there are more than `count` or they are older than `age` (either
    /// bound may be `None`), trimmed a bounded number at a time.
    Keep {
        /// The most kept.
        count: Option<u64>,
        /// The longest kept.
        age: Option<Duration>,
    },
}

/// Options of one queue: defaults of its jobs, retention, limits. Build with
/// [`QueueConfig::new`] and the setters; checked when the queue is built.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueueConfig {
    pub(crate) prefix: String,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter: f64,
    pub(crate) timeout: Option<Duration>,
    pub(crate) completed: Retention,
    pub(crate) dead: Retention,
    pub(crate) max_payload: usize,
    pub(crate) events: u64,
    pub(crate) promote_limit: u32,
    pub(crate) recover_limit: u32,
    pub(crate) allow_eviction: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueConfig {
    /// Defaults: prefix `redkit`; 3 attempts with exponential backoff from 1 s to 1 h and
    /// 20% jitter; no run timeout; completed jobs deleted, dead jobs kept; payloads up to
    /// 512 KiB; no event stream; fetches promote up to 1000 due jobs and recover up to 100
    /// expired leases each.
    pub fn new() -> Self {
        QueueConfig {
            prefix: "redkit".into(),
            max_attempts: 3,
            backoff: Backoff::Exponential {
                base: Duration::from_secs(1),
                max: Duration::from_secs(3600),
            },
            jitter: 0.2,
            timeout: None,
            completed: Retention::None,
            dead: Retention::Keep {
                count: None,
                age: None,
            },
            max_payload: 512 * 1024,
            events: 0,
            promote_limit: 1000,
            recover_limit: 100,
            allow_eviction: false,
        }
    }

    /// Accept a server whose `maxmemory-policy` may evict keys (default: [`RedisQueue`]
    /// refuses it when built). Under memory pressure such a server drops job envelopes,
    /// leases and waiting lists, and jobs are lost without a trace. Only for servers that
    /// never reach `maxmemory`. The memory backend ignores it.
    ///
    /// [`RedisQueue`]: crate::RedisQueue
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// The key prefix: keys are `<prefix>:queue:{<name>}:…`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Attempts per job unless it sets its own (default 3; failures and stalls count).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The wait between attempts unless a job sets its own.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Backoff jitter unless a job sets its own (0..=1, default 0.2).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction;
        self
    }

    /// How long one run may take unless a job sets its own (default: no limit).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long completed jobs (with their results) are kept (default: not at all).
    pub fn keep_completed(mut self, retention: Retention) -> Self {
        self.completed = retention;
        self
    }

    /// How long dead jobs are kept (default: until retried or removed). Only `count`
    /// applies: dead jobs are trimmed oldest first when a job dies.
    pub fn keep_dead(mut self, retention: Retention) -> Self {
        self.dead = retention;
        self
    }

    /// The largest payload accepted (default 512 KiB).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Record completed, failed, stalled and dead events in a stream of about `max_len`
    /// entries (`<prefix>:queue:{<name>}:events`; 0, the default, records none).
    pub fn events(mut self, max_len: u64) -> Self {
        self.events = max_len;
        self
    }

    pub(crate) fn validate(&self, name: &str) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        check_name("queue name", name).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        redkit_core::Keyspace::new(&self.prefix)
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        if self.max_attempts == 0 || self.max_attempts > u32::from(u16::MAX) {
            return bad(format!(
                "max_attempts must be in 1..=65535, got {}",
                self.max_attempts
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad(format!("jitter must be in [0, 1], got {}", self.jitter));
        }
        crate::check_timeout(self.timeout).map_err(Error::InvalidConfig)?;
        crate::check_backoff(self.backoff).map_err(Error::InvalidConfig)?;
        if self.events > crate::MAX_COUNT {
            return bad(format!(
                "an event stream of {} entries, over the limit of {}",
                self.events,
                crate::MAX_COUNT
            ));
        }
        if self.max_payload == 0 || self.max_payload > 64 * 1024 * 1024 {
            return bad(format!(
                "max_payload must be in 1..=64 MiB, got {}",
                self.max_payload
            ));
        }
        for r in [self.completed, self.dead] {
            if let Retention::Keep { count: Some(0), .. } = r {
                return bad(
                    "a retention count must be positive (Retention::None keeps none)".into(),
                );
            }
            if let Retention::Keep { age: Some(age), .. } = r {
                crate::check_duration("a retention age", age)
                    .map_err(|e| Error::InvalidConfig(e.to_string()))?;
            }
        }
        Ok(())
    }
}
