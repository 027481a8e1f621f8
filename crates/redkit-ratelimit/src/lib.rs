#![doc = include_str!("../README.md")]

mod error;
mod limit;
mod memory;
mod policy;
mod redis;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "tower")]
mod forwarded;
#[cfg(feature = "tower")]
pub mod tower;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub use error::{Error, Result};
pub use limit::{Algorithm, Limit, MAX_CAPACITY, MAX_LOG_CAPACITY, MAX_WINDOW};
pub use memory::{MemoryRateLimiter, MemoryRateLimiterBuilder};
pub use redis::{OnError, RedisRateLimiter, RedisRateLimiterBuilder};

/// A rate limiter: one or more [`Limit`]s applied to every key (user, IP, API token, ...).
///
/// Object safe: `Arc<dyn RateLimiter>` works. Every operation is one [`Request`]; the
/// provided methods each run one, [`RateLimiter::run`] runs a batch in one round trip.
#[async_trait]
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Runs the requests in order, atomically each, and returns one decision per request.
    /// Invalid requests (bad key, zero cost, cost above a capacity) fail the whole batch
    /// before anything is sent. If a key holds data of another type (written by something
    /// else), the call fails with a store error and nothing of the batch was written (on a
    /// cluster: nothing in that key's hash slot; see the README, "Batches and
    /// cancellation", for a store failure of one slot). Concurrent single calls that the
    /// limiter batches together are isolated: each gets its own answer or error.
    async fn run(&self, requests: &[Request<'_>]) -> Result<Vec<Decision>>;

    /// The limits every key is held to, in the order of [`Decision::statuses`].
    fn limits(&self) -> &[Limit];

    /// Consumes `cost` units of every limit of `key` if all of them have room, else none.
    async fn check(&self, key: &str, cost: u64) -> Result<Decision> {
        single(self.run(&[Request::check(key, cost)]).await)
    }

    /// What a check of cost 1 would answer now, consuming nothing.
    async fn peek(&self, key: &str) -> Result<Decision> {
        single(self.run(&[Request::peek(key)]).await)
    }

    /// Forgets everything about `key`: its counts and any block.
    async fn reset(&self, key: &str) -> Result<()> {
        single(self.run(&[Request::reset(key)]).await).map(drop)
    }

    /// Consumes `points` of every limit of `key` without checking (a penalty for a bad
    /// login, say); the answer is the state afterwards.
    async fn penalty(&self, key: &str, points: u64) -> Result<Decision> {
        single(self.run(&[Request::penalty(key, points)]).await)
    }

    /// Gives back up to `points` to every limit of `key` (a request that turned out free).
    async fn reward(&self, key: &str, points: u64) -> Result<Decision> {
        single(self.run(&[Request::reward(key, points)]).await)
    }

    /// Denies every check of `key` for `duration`; its counts start afresh afterwards.
    async fn block(&self, key: &str, duration: Duration) -> Result<Decision> {
        single(self.run(&[Request::block(key, duration)]).await)
    }

    /// Checks `cost` units and, while denied, sleeps until the limit says the request can
    /// pass (plus up to 5% jitter, so waiters do not come back together) — as long as that
    /// stays within `max_wait` in total. Returns the last decision: allowed, or denied
    /// when waiting longer would exceed `max_wait`.
    async fn wait(&self, key: &str, cost: u64, max_wait: Duration) -> Result<Decision> {
        let start = tokio::time::Instant::now();
        loop {
            let d = self.check(key, cost).await?;
            let Some(retry) = d.retry_after.filter(|_| !d.allowed) else {
                return Ok(d);
            };
            let jitter = retry.mul_f64(fastrand::f64() * 0.05);
            let sleep = retry.saturating_add(jitter);
            if start.elapsed().saturating_add(sleep) > max_wait {
                return Ok(d);
            }
            tokio::time::sleep(sleep).await;
        }
    }

    /// Checks many `(key, cost)` pairs in one round trip (one per hash slot on a cluster),
    /// in order: a key listed twice sees the first check's consumption.
    async fn check_many(&self, checks: &[(&str, u64)]) -> Result<Vec<Decision>> {
        let requests: Vec<Request<'_>> = checks
            .iter()
            .map(|&(key, cost)| Request::check(key, cost))
            .collect();
        self.run(&requests).await
    }
}

fn single(decisions: Result<Vec<Decision>>) -> Result<Decision> {
    decisions?
        .pop()
        .ok_or_else(|| Error::Store(redkit_core::Error::unexpected_reply("no decision")))
}

/// One operation on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request<'a> {
    /// The key (subject) the limits apply to.
    pub key: &'a str,
    /// What to do.
    pub op: Op,
}

/// What a [`Request`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Consume `cost` units if every limit has room.
    Check {
        /// Units to consume (at least 1, at most the smallest capacity).
        cost: u64,
    },
    /// Answer as a check of cost 1 would, consuming nothing.
    Peek,
    /// Consume `points` without checking.
    Penalty {
        /// Units to consume.
        points: u64,
    },
    /// Give back up to `points`.
    Reward {
        /// Units to give back.
        points: u64,
    },
    /// Deny every check for `duration`.
    Block {
        /// How long.
        duration: Duration,
    },
    /// Forget the key's state.
    Reset,
}

impl<'a> Request<'a> {
    /// A check of `cost` units.
    pub fn check(key: &'a str, cost: u64) -> Self {
        Request {
            key,
            op: Op::Check { cost },
        }
    }

    /// A peek.
    pub fn peek(key: &'a str) -> Self {
        Request { key, op: Op::Peek }
    }

    /// A penalty of `points`.
    pub fn penalty(key: &'a str, points: u64) -> Self {
        Request {
            key,
            op: Op::Penalty { points },
        }
    }

    /// A reward of `points`.
    pub fn reward(key: &'a str, points: u64) -> Self {
        Request {
            key,
            op: Op::Reward { points },
        }
    }

    /// A block for `duration`.
    pub fn block(key: &'a str, duration: Duration) -> Self {
        Request {
            key,
            op: Op::Block { duration },
        }
    }

    /// A reset.
    pub fn reset(key: &'a str) -> Self {
        Request { key, op: Op::Reset }
    }
}

/// The answer to one request.
///
/// The top-level numbers are those of the binding limit: when denied, the one that makes
/// the caller wait longest; when allowed, the one with the fewest units left.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request passed (for a check: it consumed its cost).
    pub allowed: bool,
    /// The binding limit's capacity.
    pub limit: u64,
    /// Units left in the binding limit after this request.
    pub remaining: u64,
    /// Until the binding limit is fully replenished (or its window ends).
    pub reset_after: Duration,
    /// When denied: how long until the same request can pass. `None` when allowed.
    pub retry_after: Option<Duration>,
    /// Every limit's own state, in the order of [`RateLimiter::limits`].
    pub statuses: Vec<LimitStatus>,
    /// Decided without the store (it failed and the limiter fails open or uses its
    /// insurance limiter): the answer does not reflect other processes.
    pub degraded: bool,
}

/// One limit's state after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LimitStatus {
    /// Whether this limit alone had room.
    pub allowed: bool,
    /// Its capacity.
    pub limit: u64,
    /// Units left.
    pub remaining: u64,
    /// Until fully replenished (or the window ends).
    pub reset_after: Duration,
    /// When this limit had no room: how long until it has.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Builds a decision from per-limit statuses (binding limit as documented above).
    pub(crate) fn from_statuses(allowed: bool, statuses: Vec<LimitStatus>) -> Decision {
        let binding = if allowed {
            statuses
                .iter()
                .min_by_key(|s| (s.remaining, std::cmp::Reverse(s.reset_after)))
        } else {
            statuses
                .iter()
                .filter(|s| !s.allowed)
                .max_by_key(|s| s.retry_after)
                .or_else(|| statuses.first())
        };
        let b = binding.copied().unwrap_or(LimitStatus {
            allowed,
            limit: 0,
            remaining: 0,
            reset_after: Duration::ZERO,
            retry_after: None,
        });
        Decision {
            allowed,
            limit: b.limit,
            remaining: b.remaining,
            reset_after: b.reset_after,
            retry_after: if allowed { None } else { b.retry_after },
            statuses,
            degraded: false,
        }
    }

    /// An allowed decision made without the store (fail open).
    pub(crate) fn open(limits: &[Limit]) -> Decision {
        let statuses = limits
            .iter()
            .map(|l| LimitStatus {
                allowed: true,
                limit: l.capacity(),
                remaining: l.capacity(),
                reset_after: Duration::ZERO,
                retry_after: None,
            })
            .collect();
        let mut d = Decision::from_statuses(true, statuses);
        d.degraded = true;
        d
    }
}
