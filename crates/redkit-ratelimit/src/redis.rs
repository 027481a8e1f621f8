//! [`RedisRateLimiter`]: every limit decided by one Lua script on the server's clock.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::{Coalescer, Key, Keyspace, PackedInts, Redis, Script};
use tracing::Instrument;

use crate::limit::Limit;
use crate::policy::{Policy, Prepared};
use crate::{Decision, Error, Op, RateLimiter, Request, Result};

/// One script for every algorithm, so a batch of requests is one call. `fast.lua` decides
/// the common check in one or two commands; the general part (every algorithm, several
/// limits, every op) is wrapped in a function so its closures are built only when a batch
/// needs it; `decide.lua` runs the batch.
static DECIDE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "decide",
        concat!(
            include_str!("../lua/common.lua"),
            include_str!("../lua/fast.lua"),
            "local function general(now, L, base, items)\n",
            include_str!("../lua/fixed_window.lua"),
            include_str!("../lua/sliding_window.lua"),
            include_str!("../lua/sliding_log.lua"),
            include_str!("../lua/gcra.lua"),
            include_str!("../lua/general.lua"),
            "end\n",
            include_str!("../lua/decide.lua"),
        ),
    )
});

/// Batches of at most this many requests per script call.
const MAX_BATCH: usize = 128;

/// What a [`RedisRateLimiter`] answers when Redis fails or misses the deadline.
///
/// Bad input is never covered: it is an error whatever the policy.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum OnError {
    /// Return the error (default): callers decide, nothing passes unchecked.
    #[default]
    FailClosed,
    /// Allow the request, with [`Decision::degraded`] set. Availability over protection.
    FailOpen,
    /// Ask another limiter, usually a [`MemoryRateLimiter`](crate::MemoryRateLimiter)
    /// holding this process's share, until Redis is back. Its decisions are marked
    /// [`Decision::degraded`]; nothing is copied back to Redis afterwards.
    Insurance(Arc<dyn RateLimiter>),
}

impl fmt::Debug for OnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnError::FailClosed => f.write_str("FailClosed"),
            OnError::FailOpen => f.write_str("FailOpen"),
            OnError::Insurance(l) => f.debug_tuple("Insurance").field(l).finish(),
        }
    }
}

/// A rate limiter on Redis (standalone, cluster or sentinel).
///
/// Keys: `<prefix>:rl:{<key>}:<algorithm code><window in µs>_<capacity>...` (every
/// parameter of the limit, see the README), e.g. `api:rl:{user:42}:fw60000000_100`;
/// every limit of one key shares its hash tag, so a check
/// of several limits is one atomic script on one slot. Concurrent calls on one limiter
/// are coalesced into one script call per batch (per slot on a cluster); a lone call
/// goes out at once.
#[derive(Clone)]
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    ns: Keyspace,
    policy: Arc<Policy>,
    batches: Option<Coalescer<Item, Result<Decision>>>,
    deadline: Option<Duration>,
    on_error: OnError,
    denied: Option<DenyCache>,
}

/// Recent denials, answered in process until they end: a key that was denied a cost
/// cannot pass that cost or more before its `retry_after`, whatever else happens in this
/// process, so these answers never admit too much. Bounded: when full, expired entries
/// are dropped, and if none has expired new denials are not remembered.
///
/// `generation` counts this process's resets, rewards and blocks (each forgets before it
/// is sent and again once answered): a denial is remembered only if none ran while its
/// check was on its way, since Redis may have decided the check before that change.
struct DenyCache {
    max: usize,
    entries: std::sync::Mutex<std::collections::HashMap<String, Denial>>,
    generation: std::sync::atomic::AtomicU64,
}

struct Denial {
    until: std::time::Instant,
    cost: u64,
    decision: Decision,
}

impl DenyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Denial>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A remembered denial that covers a check of `cost` now.
    fn get(&self, key: &str, cost: u64) -> Option<Decision> {
        let now = std::time::Instant::now();
        let entries = self.lock();
        let denial = entries.get(key)?;
        if denial.until <= now || cost < denial.cost {
            return None;
        }
        let left = denial.until - now;
        let mut d = denial.decision.clone();
        d.retry_after = Some(left);
        for s in d.statuses.iter_mut() {
            s.retry_after = s.retry_after.map(|r| r.min(left));
        }
        Some(d)
    }

    /// The generation to pass to [`DenyCache::remember`], read before a check is sent.
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn remember(&self, key: &str, cost: u64, d: &Decision, generation: u64) {
        let Some(retry) = d.retry_after.filter(|_| !d.allowed) else {
            return;
        };
        let now = std::time::Instant::now();
        let mut entries = self.lock();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= self.max && !entries.contains_key(key) {
            entries.retain(|_, e| e.until > now);
            if entries.len() >= self.max {
                return;
            }
        }
        let Some(until) = now.checked_add(retry) else {
            return;
        };
        entries.insert(
            key.to_string(),
            Denial {
                until,
                cost,
                decision: d.clone(),
            },
        );
    }

    fn forget(&self, key: &str) {
        let mut entries = self.lock();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        entries.remove(key);
    }
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.inner.ns.prefix())
            .field("limits", &self.inner.policy.limits)
            .field("on_error", &self.inner.on_error)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisRateLimiter`].
#[derive(Debug)]
pub struct RedisRateLimiterBuilder {
    redis: Redis,
    prefix: String,
    limits: Vec<Limit>,
    aligned: bool,
    batching: bool,
    deadline: Option<Duration>,
    on_error: OnError,
    deny_cache: usize,
    allow_eviction: bool,
}

/// One request ready to send: its keys (one per limit) and numbers.
struct Item {
    keys: Vec<Key>,
    prep: Prepared,
}

impl Item {
    /// The key whose hash slot the request goes to (every key of it shares that slot).
    fn slot_key(&self) -> &Key {
        &self.keys[0]
    }
}

impl RedisRateLimiter {
    /// A builder; add at least one [`Limit`]. The key prefix defaults to `redkit`.
    pub fn builder(redis: Redis) -> RedisRateLimiterBuilder {
        RedisRateLimiterBuilder {
            redis,
            prefix: "redkit".into(),
            limits: Vec::new(),
            aligned: false,
            batching: true,
            deadline: None,
            on_error: OnError::FailClosed,
            deny_cache: 0,
            allow_eviction: false,
        }
    }

    fn item(&self, r: &Request<'_>) -> Result<Item> {
        let prep = self.inner.policy.prepare(r)?;
        let keys = self
            .inner
            .policy
            .suffixes
            .iter()
            .map(|s| self.inner.ns.tagged_child(r.key, s))
            .collect::<redkit_core::Result<Vec<Key>>>()?;
        Ok(Item { keys, prep })
    }

    /// The Redis keys that hold `key`'s state, one per limit in the order of
    /// [`RateLimiter::limits`] (for inspection and tests; they share one hash tag).
    pub fn state_keys(&self, key: &str) -> Result<Vec<String>> {
        self.inner
            .policy
            .suffixes
            .iter()
            .map(|s| {
                self.inner
                    .ns
                    .tagged_child(key, s)
                    .map(redkit_core::Key::into_string)
                    .map_err(Error::from)
            })
            .collect()
    }

    /// One request: through the batches when they are on. The hot path (batched, no
    /// deadline) awaits only the batch; the rest is boxed, so the future every `check`
    /// allocates stays small (a future over ~1 KiB costs the allocator far more).
    async fn send_one(&self, r: &Request<'_>) -> Result<Decision> {
        let item = self.item(r)?;
        match (&self.inner.batches, self.inner.deadline) {
            (Some(batches), None) => batches.call(item).await?,
            (Some(batches), Some(_)) => {
                Box::pin(self.within_deadline(async { batches.call(item).await? })).await
            }
            (None, _) => {
                let work = async {
                    decide(
                        &self.inner.redis,
                        &self.inner.policy,
                        std::slice::from_ref(&item),
                        false,
                    )
                    .await
                    .pop()
                    .unwrap_or_else(|| {
                        Err(Error::Store(redkit_core::Error::unexpected_reply(
                            "no decision",
                        )))
                    })
                };
                Box::pin(self.within_deadline(work)).await
            }
        }
    }

    /// Several requests: one script call per hash slot, not batched with other calls.
    /// Each call first checks the type of every key it holds and, if one holds another
    /// type of value, writes nothing at all (`strict`). One result per request: on a
    /// cluster a slot whose call failed fails only its own requests (the others were
    /// decided); the outer error is bad input or the deadline, for the whole batch.
    async fn send(&self, requests: &[Request<'_>]) -> Result<Vec<Result<Decision>>> {
        if let [one] = requests {
            return match self.send_one(one).await {
                Err(e) if e.is_store_failure() => Ok(vec![Err(e)]),
                other => Ok(vec![Ok(other?)]),
            };
        }
        let items = requests
            .iter()
            .map(|r| self.item(r))
            .collect::<Result<Vec<Item>>>()?;
        let work = async { Ok(decide(&self.inner.redis, &self.inner.policy, &items, true).await) };
        self.within_deadline(work).await
    }

    async fn within_deadline<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        match self.inner.deadline {
            Some(d) => tokio::time::timeout(d, work)
                .await
                .map_err(|_| Error::Deadline(d))?,
            None => work.await,
        }
    }

    /// Answers for requests whose store call failed, as the [`OnError`] policy says.
    async fn recover(&self, e: Error, requests: &[Request<'_>]) -> Result<Vec<Decision>> {
        match &self.inner.on_error {
            OnError::FailClosed => Err(e),
            OnError::FailOpen => {
                tracing::warn!(error = %e, "rate limiter store failed; allowing (fail open)");
                Ok(requests
                    .iter()
                    .map(|_| Decision::open(&self.inner.policy.limits))
                    .collect())
            }
            OnError::Insurance(insurance) => {
                tracing::warn!(error = %e, "rate limiter store failed; using the insurance limiter");
                let mut ds = insurance.run(requests).await?;
                for d in &mut ds {
                    d.degraded = true;
                }
                Ok(ds)
            }
        }
    }

    fn span(&self, requests: usize) -> tracing::Span {
        tracing::debug_span!(
            "redkit.ratelimit",
            prefix = self.inner.ns.prefix(),
            requests
        )
    }
}

impl RedisRateLimiterBuilder {
    /// The key prefix (`<prefix>:rl:{key}:...`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Adds a limit. Several limits are checked and consumed together, atomically.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limits.push(limit);
        self
    }

    /// Window limits end at the same instant for every key (multiples of the window since
    /// the UNIX epoch, like a calendar minute) instead of at a per-key offset. Offsets
    /// (the default) spread resets, so clients do not all come back at once.
    pub fn aligned_windows(mut self, on: bool) -> Self {
        self.aligned = on;
        self
    }

    /// Coalesce concurrent single requests into one script call per batch (default on).
    pub fn batching(mut self, on: bool) -> Self {
        self.batching = on;
        self
    }

    /// A deadline for each call: past it the call fails with [`Error::Deadline`] (which
    /// the [`OnError`] policy covers). Default: none beyond the connection's timeouts.
    /// A request already sent may still be decided (and consume) on the server after its
    /// caller stopped waiting; it is never sent again. The same holds for a dropped
    /// `check` future: dropped before its batch was sent, it is never sent; dropped
    /// after, its consumption stands (test `a_dropped_check_consumes_only_if_it_was_sent`).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Remember denials of up to `max_keys` keys in this process and answer repeated
    /// checks of a denied key locally, without a round trip, until its `retry_after` ends
    /// (a check of a smaller cost still goes to Redis). Attack traffic on a few keys then
    /// costs Redis nothing. A reset, reward or block done by *another* process is seen
    /// here only when the remembered denial ends: the cache can deny a little too long,
    /// never admit too much. Off (0) by default.
    pub fn deny_cache(mut self, max_keys: usize) -> Self {
        self.deny_cache = max_keys;
        self
    }

    /// What to answer when Redis fails (default [`OnError::FailClosed`]).
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }

    /// Accept a server whose `maxmemory-policy` may evict keys (default: refused at
    /// [`build`](Self::build)). Under memory pressure such a server drops counters, logs
    /// and blocks, and every evicted key starts a full new allowance: the limit admits more
    /// than it says. Only for servers that never reach `maxmemory`.
    pub fn allow_eviction(mut self, allow: bool) -> Self {
        self.allow_eviction = allow;
        self
    }

    /// Validates the limits and the prefix.
    pub fn build(self) -> Result<RedisRateLimiter> {
        let policy = Arc::new(Policy::new(self.limits, self.aligned)?);
        let ns = Keyspace::new(&self.prefix)
            .and_then(|k| k.child("rl"))
            .map_err(|e| Error::InvalidLimit(format!("bad prefix: {e}")))?;
        if self.deadline == Some(Duration::ZERO) {
            return Err(Error::InvalidArgument(
                "the deadline must be above zero".into(),
            ));
        }
        if !self.allow_eviction {
            self.redis.ensure_no_eviction(
                "rate limiter",
                "an evicted counter starts a full new allowance, so the limit admits more \
                 than it says",
            )?;
        }
        let batches = self.batching.then(|| {
            let redis = self.redis.clone();
            let policy = Arc::clone(&policy);
            // Each request is answered on its own: a key holding another type fails only
            // its request, and on a cluster a slot whose call fails fails only the
            // requests of that slot (the others were decided and are answered).
            Coalescer::pipelined(MAX_BATCH, move |items: Vec<Item>| {
                let redis = redis.clone();
                let policy = Arc::clone(&policy);
                async move { Ok(decide(&redis, &policy, &items, false).await) }
            })
        });
        Ok(RedisRateLimiter {
            inner: Arc::new(Inner {
                redis: self.redis,
                ns,
                policy,
                batches,
                deadline: self.deadline,
                on_error: self.on_error,
                denied: (self.deny_cache > 0).then(|| DenyCache {
                    max: self.deny_cache,
                    entries: Default::default(),
                    generation: Default::default(),
                }),
            }),
        })
    }
}

/// Runs the items as one script call per hash slot; one result per item, in order: an
/// item whose slot's call failed gets that call's error, the others their decisions.
/// `strict`: each call writes nothing if any of its keys holds another type of value
/// (see decide.lua).
async fn decide(
    redis: &Redis,
    policy: &Policy,
    items: &[Item],
    strict: bool,
) -> Vec<Result<Decision>> {
    let width = 3 * policy.params.len();
    let build = |group: &[usize]| {
        let mut call = DECIDE.call();
        for &i in group {
            for k in &items[i].keys {
                call = call.key(k);
            }
        }
        call = call.arg(policy.params.len());
        for p in &policy.params {
            call = call.arg(p[0]).arg(p[1]).arg(p[2]).arg(p[3]);
        }
        let numbers = group.iter().flat_map(|&i| {
            let p = items[i].prep;
            [u64::from(p.op), p.amount, p.phase]
        });
        call = call.arg(PackedInts::pack_unsigned(numbers));
        if strict {
            call = call.arg(1);
        }
        call
    };
    if !redis.is_cluster() {
        // One call for all (one slot group): it answers every item or fails them all
        // alike, as the per-item form would, without copying each item's numbers out.
        return match redis
            .invoke_by_slot(items, Item::slot_key, width, &build)
            .await
        {
            Ok(numbers) => numbers
                .chunks_exact(width.max(1))
                .map(|n| policy.decode_one(n))
                .collect(),
            Err(e) => items
                .iter()
                .map(|_| Err(Error::from(e.duplicate())))
                .collect(),
        };
    }
    redis
        .invoke_by_slot_each(items, Item::slot_key, width, &build)
        .await
        .into_iter()
        .map(|numbers| policy.decode_one(&numbers.map_err(Error::from)?))
        .collect()
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn run(&self, requests: &[Request<'_>]) -> Result<Vec<Decision>> {
        // what this process changes on purpose, it sees at once: forgotten before it is
        // sent and again once answered, so a denial decided before it and answered after
        // is not remembered either (see DenyCache)
        let forget = || {
            if let Some(cache) = &self.inner.denied {
                for r in requests {
                    if !matches!(r.op, Op::Check { .. } | Op::Peek) {
                        cache.forget(r.key);
                    }
                }
            }
        };
        forget();
        let sent = self
            .send(requests)
            .instrument(self.span(requests.len()))
            .await;
        forget();
        let results = match sent {
            Err(e) if e.is_store_failure() => return self.recover(e, requests).await,
            other => other?,
        };
        if results.iter().all(Result::is_ok) {
            return results.into_iter().collect();
        }
        // Only the requests whose store call failed go to the OnError policy: the others
        // were decided by Redis (on a cluster, by another slot's call), and a denial there
        // must stay a denial, neither opened nor decided again by the insurance.
        let mut decided = Vec::with_capacity(results.len());
        let mut failed = Vec::new();
        let mut first = None;
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(d) => decided.push(Some(d)),
                Err(e) if e.is_store_failure() => {
                    decided.push(None);
                    failed.push(requests[i]);
                    first.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        let Some(e) = first else {
            return Ok(decided.into_iter().flatten().collect());
        };
        let mut recovered = self.recover(e, &failed).await?.into_iter();
        decided
            .into_iter()
            .map(|d| {
                d.or_else(|| recovered.next()).ok_or_else(|| {
                    Error::Store(redkit_core::Error::unexpected_reply(
                        "the OnError policy answered fewer requests than it was given",
                    ))
                })
            })
            .collect()
    }

    async fn check(&self, key: &str, cost: u64) -> Result<Decision> {
        if let Some(d) = self.inner.denied.as_ref().and_then(|c| c.get(key, cost)) {
            return Ok(d);
        }
        let request = Request::check(key, cost);
        let generation = self.inner.denied.as_ref().map(DenyCache::generation);
        let result = self.send_one(&request).instrument(self.span(1)).await;
        if let (Ok(d), Some(cache), Some(g)) = (&result, &self.inner.denied, generation) {
            cache.remember(key, cost, d, g);
        }
        match result {
            Err(e) if e.is_store_failure() => {
                let mut ds = Box::pin(self.recover(e, std::slice::from_ref(&request))).await?;
                ds.pop().ok_or_else(|| {
                    Error::Store(redkit_core::Error::unexpected_reply("no decision"))
                })
            }
            other => other,
        }
    }

    fn limits(&self) -> &[Limit] {
        &self.inner.policy.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_has_a_key_header_and_every_part() {
        let code = DECIDE.code();
        assert!(code.starts_with("-- KEYS"));
        for part in [
            "local fixed_window",
            "local sliding_window",
            "local sliding_log",
            "local gcra",
            "redis.call('TIME')",
        ] {
            assert!(code.contains(part), "{part}");
        }
        assert!(!code.contains("KEYS[1]..") && !code.contains("redis.call('KEYS'"));
    }

    #[test]
    fn the_keys_of_one_request_share_a_slot() {
        let ns = Keyspace::new("app").unwrap().child("rl").unwrap();
        let policy = Policy::new(
            vec![
                Limit::fixed_window(10, Duration::from_secs(1)),
                Limit::sliding_window(100, Duration::from_secs(60)),
                Limit::sliding_log(5, Duration::from_secs(60)),
                Limit::token_bucket(5, 1, Duration::from_secs(1)),
                Limit::gcra(1000, Duration::from_secs(3600)),
            ],
            false,
        )
        .unwrap();
        for subject in ["user:42", "10.0.0.1", "a", "ключ"] {
            let tag = ns.tagged(subject).unwrap();
            let keys: Vec<Key> = policy
                .suffixes
                .iter()
                .map(|s| tag.child(s).unwrap())
                .collect();
            redkit_testkit::assert_same_slot(&keys);
        }
    }
}
