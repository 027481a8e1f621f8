//! Cache and entry options.

use std::sync::Arc;
use std::time::Duration;

use crate::write::{WriteBehind, Writer, WriterRef};
use crate::{Error, Result};

/// The largest value Redis accepts in a string.
const REDIS_MAX_VALUE: usize = 512 * 1024 * 1024;

/// Options of one cache (one namespace): TTLs, early refresh, single flight, the local L1
/// and limits. Build with [`CacheConfig::new`] and the setters; checked when the cache is
/// built.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    pub(crate) prefix: String,
    pub(crate) namespace: String,
    pub(crate) ttl: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_jitter: Duration,
    pub(crate) stale: Duration,
    pub(crate) negative_ttl: Option<Duration>,
    pub(crate) beta: f64,
    pub(crate) max_value_size: usize,
    pub(crate) flight: Option<DistributedFlight>,
    pub(crate) local: Option<Local>,
    pub(crate) writes: WriteMode,
    #[cfg(feature = "__test-hooks")]
    pub(crate) hooks: Option<Arc<crate::hooks::Hooks>>,
}

/// Where writes go besides the cache.
#[derive(Debug, Clone)]
pub(crate) enum WriteMode {
    /// Only the cache (cache-aside: the application writes its database itself).
    Aside,
    /// The writer first, then the cache.
    Through(WriterRef),
    /// The cache and a durable log, flushed to the writer later.
    Behind(WriterRef, WriteBehind),
}

/// Cross-process single flight: see [`CacheConfig::distributed_single_flight`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct DistributedFlight {
    pub(crate) lock_ttl: Duration,
    pub(crate) wait: Duration,
}

/// The in-process L1: see [`CacheConfig::local`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local {
    pub(crate) capacity: u64,
    pub(crate) max_staleness: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheConfig {
    /// Defaults: namespace `default`, prefix `redkit`, TTL 5 min with 10% jitter (at most
    /// 10 s), no stale window, no negative caching, early refresh with beta 1, values up
    /// to 1 MiB, single flight within the process only, no L1.
    pub fn new() -> Self {
        CacheConfig {
            prefix: "redkit".into(),
            namespace: "default".into(),
            ttl: Duration::from_secs(300),
            jitter: 0.1,
            max_jitter: Duration::from_secs(10),
            stale: Duration::ZERO,
            negative_ttl: None,
            beta: 1.0,
            max_value_size: 1024 * 1024,
            flight: None,
            local: None,
            writes: WriteMode::Aside,
            #[cfg(feature = "__test-hooks")]
            hooks: None,
        }
    }

    /// The key prefix: keys are `<prefix>:cache:<namespace>:…`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The namespace: one cache, invalidated as a whole by [`crate::Cache::clear`].
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The default TTL of entries (per entry: [`SetOptions::ttl`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// TTL jitter: each entry's TTL is shortened by a random share of up to `fraction` of
    /// it, at most `max`, so entries written together do not expire together (default
    /// 0.1, 10 s; 0 turns it off).
    pub fn jitter(mut self, fraction: f64, max: Duration) -> Self {
        self.jitter = fraction;
        self.max_jitter = max;
        self
    }

    /// Stale-while-revalidate: an entry stays in Redis this long past its TTL, and
    /// `get_or_load` serves it while one background load refreshes it (a failed refresh
    /// keeps serving it until the window ends). Plain `get` never returns stale entries.
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale = window;
        self
    }

    /// Negative caching: when a loader finds nothing (`Ok(None)`), remember that for
    /// `ttl`, so lookups of missing records do not reach the database each time.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Probabilistic early refresh (XFetch, Vattani et al. 2015): a read refreshes an entry
    /// before it expires with probability `exp(-remaining / (beta × load time))`, in the
    /// background. Higher beta refreshes earlier; 0 turns it off (default 1).
    pub fn early_refresh(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// The largest value accepted, encoded (default 1 MiB).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_size = bytes;
        self
    }

    /// Single flight across processes: a loading process holds a short Redis lock
    /// (`lock_ttl`, longer than a load takes); other processes wait up to `wait` for its
    /// value instead of loading too, then load themselves. The value is written only while
    /// the lock is still held, so a loader that outlived its lock cannot overwrite newer
    /// data.
    pub fn distributed_single_flight(mut self, lock_ttl: Duration, wait: Duration) -> Self {
        self.flight = Some(DistributedFlight { lock_ttl, wait });
        self
    }

    /// An in-process L1 of up to `capacity` entries in front of Redis, kept coherent by
    /// invalidation messages. An entry is served from L1 for at most `max_staleness`
    /// after it was read, which bounds staleness even if messages are lost; L1 is
    /// cleared whenever the invalidation link drops, lags or goes silent.
    pub fn local(mut self, capacity: u64, max_staleness: Duration) -> Self {
        self.local = Some(Local {
            capacity,
            max_staleness,
        });
        self
    }

    /// Write-through: `set` and `delete` call `writer` first and change the cache only
    /// after it succeeded. A failing writer fails the call with [`Error::Write`] and the
    /// keys are dropped from the cache (the record's state is unknown). Loads never call
    /// the writer.
    ///
    /// Two processes writing one key at the same moment may leave the cache with the
    /// older of the two values until its TTL (each writes the database, then the cache,
    /// and the second steps may interleave): when keys see concurrent writers, prefer
    /// write-behind, which orders writes per key.
    pub fn write_through(mut self, writer: Arc<dyn Writer>) -> Self {
        self.writes = WriteMode::Through(WriterRef(writer));
        self
    }

    /// Write-behind: `set` and `delete` change the cache and append the change to a
    /// durable log in Redis in one step, and return; a flusher hands the changes to
    /// `writer` in batches, newest per key, in version order per key, retrying a failing
    /// batch and dead-lettering what keeps failing. An acknowledged write stays in the log
    /// until a writer took it, across flusher crashes and restarts (as durable as the
    /// server makes it: AOF, no `allkeys-*` eviction; see the README).
    ///
    /// Entries must outlive the flush lag (a TTL far above [`WriteBehind::interval`]):
    /// a write whose entry expired before it was flushed is not visible to readers until
    /// it is.
    pub fn write_behind(mut self, writer: Arc<dyn Writer>, options: WriteBehind) -> Self {
        self.writes = WriteMode::Behind(WriterRef(writer), options);
        self
    }

    /// Test-only pause points of this handle (feature `__test-hooks`).
    #[cfg(feature = "__test-hooks")]
    #[doc(hidden)]
    pub fn test_hooks(mut self, hooks: Arc<crate::hooks::Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        redkit_core::Keyspace::new(&self.prefix)
            .and_then(|k| k.child("cache"))
            .and_then(|k| k.child(&self.namespace))
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        check_ttl("ttl", self.ttl).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        if !(0.0..1.0).contains(&self.jitter) {
            return bad(format!("jitter must be in [0, 1), got {}", self.jitter));
        }
        if !self.beta.is_finite() || self.beta < 0.0 {
            return bad(format!(
                "early refresh beta must be finite and >= 0, got {}",
                self.beta
            ));
        }
        if self.max_value_size == 0 || self.max_value_size > REDIS_MAX_VALUE - 64 {
            return bad(format!(
                "max_value_size must be in 1..{}, got {}",
                REDIS_MAX_VALUE - 64,
                self.max_value_size
            ));
        }
        check_window("stale window", self.stale)
            .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        if let Some(t) = self.negative_ttl {
            check_ttl("negative ttl", t).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        }
        if let Some(f) = self.flight {
            check_ttl("lock ttl", f.lock_ttl).map_err(|e| Error::InvalidConfig(e.to_string()))?;
            if f.wait.is_zero() {
                return bad("the single flight wait must be positive".into());
            }
            check_window("the single flight wait", f.wait)
                .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        }
        if let Some(l) = self.local {
            if l.capacity == 0 {
                return bad("the L1 capacity must be positive".into());
            }
            check_ttl("L1 max staleness", l.max_staleness)
                .map_err(|e| Error::InvalidConfig(e.to_string()))?;
        }
        if let WriteMode::Behind(_, options) = &self.writes {
            options.validate()?;
        }
        Ok(())
    }
}

/// The longest TTL, stale window or wait accepted: 100 years. A TTL plus a stale window
/// (at most 200 years, about 6.3 × 10^12 ms) stays far below the largest expiry Redis
/// takes (`i64::MAX` ms) and below every overflow in the arithmetic on it.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A TTL must be at least 1 ms and at most [`MAX_DURATION`].
pub(crate) fn check_ttl(what: &str, ttl: Duration) -> Result<()> {
    if ttl < Duration::from_millis(1) {
        return Err(Error::InvalidArgument(format!(
            "{what} must be at least 1 ms, got {ttl:?}"
        )));
    }
    check_window(what, ttl)
}

/// A stale window may be zero, and is at most [`MAX_DURATION`].
pub(crate) fn check_window(what: &str, window: Duration) -> Result<()> {
    if window > MAX_DURATION {
        return Err(Error::InvalidArgument(format!(
            "{what} must be at most 100 years, got {window:?}"
        )));
    }
    Ok(())
}

/// Options of one write: TTL, stale window and tags. Unset fields take the cache's
/// defaults.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SetOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale: Option<Duration>,
    pub(crate) tags: Vec<String>,
}

impl SetOptions {
    /// The cache's defaults, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// This entry's TTL (jitter still applies): 1 ms to 100 years, else the write fails
    /// with [`Error::InvalidArgument`] before anything is sent.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// This entry's stale-while-revalidate window: at most 100 years.
    pub fn stale(mut self, window: Duration) -> Self {
        self.stale = Some(window);
        self
    }

    /// Tags: [`crate::Cache::invalidate_tags`] removes every entry carrying one of them.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
}

impl SetOptions {
    /// Checks what is set (the cache's defaults were checked when it was built).
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(ttl) = self.ttl {
            check_ttl("ttl", ttl)?;
        }
        if let Some(stale) = self.stale {
            check_window("stale window", stale)?;
        }
        for t in &self.tags {
            crate::core::check_name("tag", t)?;
        }
        Ok(())
    }
}

/// Options of one `get_or_load`: those of the write it makes, and whether a loader error
/// is remembered.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    pub(crate) entry: SetOptions,
    pub(crate) cache_errors: Option<Duration>,
}

impl LoadOptions {
    /// The cache's defaults; loader errors are not cached.
    pub fn new() -> Self {
        Self::default()
    }

    /// The loaded entry's TTL (1 ms to 100 years, checked before the loader runs).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.entry.ttl = Some(ttl);
        self
    }

    /// The loaded entry's stale-while-revalidate window (at most 100 years).
    pub fn stale(mut self, window: Duration) -> Self {
        self.entry.stale = Some(window);
        self
    }

    /// The loaded entry's tags.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entry = self.entry.tags(tags);
        self
    }

    /// Checks every option before a load begins (nothing is sent for bad options).
    pub(crate) fn validate(&self) -> Result<()> {
        self.entry.validate()?;
        if let Some(ttl) = self.cache_errors {
            check_ttl("cached error ttl", ttl)?;
        }
        Ok(())
    }

    /// Remember a loader error for `ttl`: calls within it fail with
    /// [`Error::CachedLoadError`] without running the loader (protects a failing
    /// database from retries).
    pub fn cache_errors(mut self, ttl: Duration) -> Self {
        self.cache_errors = Some(ttl);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_are_typed_errors() {
        let ok = CacheConfig::new();
        assert!(ok.validate().is_ok());
        for bad in [
            ok.clone().local(0, Duration::from_secs(1)),
            ok.clone().local(10, Duration::ZERO),
            ok.clone()
                .distributed_single_flight(Duration::from_secs(1), Duration::ZERO),
            ok.clone().max_value_size(usize::MAX),
            ok.clone().ttl(Duration::from_secs(u64::MAX)),
            ok.clone().prefix(""),
            ok.clone().local(10, Duration::MAX),
            ok.clone().stale_while_revalidate(Duration::MAX),
            ok.clone()
                .distributed_single_flight(Duration::from_secs(1), Duration::MAX),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidConfig(_)), "{bad:?}: {e:?}");
        }
    }
}
