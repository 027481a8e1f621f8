#![doc = include_str!("../README.md")]

/// `pause!(config, "point")`: waits at the point when the handle's configuration carries
/// test hooks (feature `__test-hooks`); expands to nothing otherwise.
macro_rules! pause {
    ($config:expr, $point:literal) => {
        #[cfg(feature = "__test-hooks")]
        {
            if let Some(h) = &$config.hooks {
                h.at($point).await;
            }
        }
    };
}

mod config;
mod core;
mod envelope;
mod error;
#[cfg(feature = "__test-hooks")]
mod hooks;
mod memory;
mod redis;
mod store;
mod write;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::config::{CacheConfig, LoadOptions, SetOptions};
pub use crate::core::MAX_KEY_LEN;
pub use crate::error::{BoxError, Error, Result};
#[cfg(feature = "__test-hooks")]
#[doc(hidden)]
pub use crate::hooks::Hooks;
pub use crate::memory::MemoryCache;
pub use crate::redis::RedisCache;
pub use crate::write::{DeadWrite, FlushReport, Version, Write, WriteBehind, Writer};
pub use bytes;

/// A loader as the byte-level [`Cache`] takes it: runs once, in its own task, and yields
/// the value's bytes, `None` when there is nothing to cache, or an error.
pub type Loader = Box<dyn FnOnce() -> BoxFuture<'static, Result<Option<Vec<u8>>, BoxError>> + Send>;

/// Counters of one cache handle since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Lookups answered by a fresh entry (from L1 or Redis), negative ones included.
    pub hits: u64,
    /// Lookups answered from the in-process L1 (also counted in `hits` when fresh).
    pub l1_hits: u64,
    /// Lookups that found nothing fresh.
    pub misses: u64,
    /// Loader runs.
    pub loads: u64,
    /// Loader runs that failed.
    pub load_errors: u64,
    /// Stale values served while a background load refreshed them.
    pub stale_served: u64,
    /// Early (XFetch) refreshes started.
    pub early_refreshes: u64,
    /// Times a load waited because another process held the key's load lock.
    pub lock_waits: u64,
    /// Cached values that could not be decoded (treated as misses).
    pub undecodable: u64,
    /// Entries in the L1 now (approximate).
    pub l1_entries: u64,
    /// Write-behind writes this handle's flusher handed to the writer.
    pub writes_flushed: u64,
    /// Write-behind writes skipped because a newer write of the key was in the same batch.
    pub writes_coalesced: u64,
    /// Write-behind writes given up on (dead letters).
    pub writes_dead: u64,
    /// Write-behind batches tried again after the writer failed.
    pub write_retries: u64,
}

/// A cache at the byte level; object safe (`Arc<dyn Cache>`). The typed API is
/// [`CacheExt`], implemented for every cache.
///
/// Keys are the caller's names (non-empty, at most [`MAX_KEY_LEN`] bytes, no braces or
/// control characters); a cache maps them into its namespace.
#[async_trait]
pub trait Cache: Send + Sync + std::fmt::Debug {
    /// The value if a fresh entry holds one. A remembered absence (negative caching), a
    /// stale entry and undecodable data all read as `None`.
    async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>>;

    /// Several values in one round trip, in order.
    async fn get_many_bytes(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>>;

    /// Stores a value.
    async fn set_bytes(&self, key: &str, value: &[u8], options: &SetOptions) -> Result<()>;

    /// Stores several values in one round trip (one per cluster slot) with the same
    /// options; all are checked before any is written.
    async fn set_many_bytes(&self, items: &[(&str, &[u8])], options: &SetOptions) -> Result<()>;

    /// Deletes entries; returns how many existed.
    async fn delete(&self, keys: &[&str]) -> Result<u64>;

    /// Whether a fresh value is cached under the key.
    async fn exists(&self, key: &str) -> Result<bool>;

    /// Deletes every entry carrying one of the tags; returns how many.
    async fn invalidate_tags(&self, tags: &[&str]) -> Result<u64>;

    /// Invalidates the whole namespace in O(1): its generation moves on, and the old
    /// entries age out by their TTLs.
    async fn clear(&self) -> Result<()>;

    /// The cached value, or the loader's: see [`CacheExt::get_or_load`].
    async fn get_or_load_bytes(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: Loader,
    ) -> Result<Option<Bytes>>;

    /// Runs the loader now (joining a load in flight for the key) and caches its result,
    /// whatever is cached.
    async fn load_bytes(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: Loader,
    ) -> Result<Option<Bytes>>;

    /// The handle's counters.
    fn metrics(&self) -> Metrics;

    /// Counts a cached value that could not be decoded (the typed API calls it).
    fn report_undecodable(&self, key: &str);

    /// Waits until every write-behind write made before this call reached the writer (or
    /// the dead letters), by whichever flusher owns its shard; fails with
    /// [`Error::FlushTimeout`] after `timeout`. Returns at once without write-behind.
    async fn flush(&self, timeout: Duration) -> Result<()>;

    /// Graceful shutdown of write-behind: this handle's flusher drains the shards it owns,
    /// gives their leases up and stops, waiting at most `deadline` (then it is stopped
    /// where it is: what it had not acknowledged stays in the log for the next flusher).
    /// Writes through this handle still work afterwards and are flushed by other handles.
    async fn shutdown(&self, deadline: Duration) -> Result<FlushReport>;

    /// Write-behind records not flushed yet, over all shards.
    async fn pending_writes(&self) -> Result<u64>;

    /// Up to `limit` writes the write-behind flusher gave up on, oldest first, with the
    /// writer's last error.
    async fn dead_writes(&self, limit: usize) -> Result<Vec<DeadWrite>>;
}

/// The typed API over any [`Cache`]: values are JSON through serde.
#[async_trait]
pub trait CacheExt: Cache {
    /// The cached value. Data that does not decode as `T` is a miss (and counted in
    /// [`Metrics::undecodable`]), never an error.
    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(bytes) = self.get_bytes(key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Some(v)),
            Err(_) => {
                self.report_undecodable(key);
                Ok(None)
            }
        }
    }

    /// Stores a value.
    async fn set<T: Serialize + Sync + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: &SetOptions,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Codec(e.to_string()))?;
        self.set_bytes(key, &bytes, options).await
    }

    /// The cached value, or the loader's result, cached. Within a process one loader runs
    /// per key at a time (the others wait for it); across processes too with
    /// [`CacheConfig::distributed_single_flight`]. The loader runs in its own task, so it
    /// must be `'static`. `Ok(None)` from the loader means "nothing there" and is
    /// remembered with [`CacheConfig::negative_ttl`]. Fresh entries may be refreshed
    /// early in the background (XFetch); stale ones are served while one refresh runs
    /// ([`CacheConfig::stale_while_revalidate`]).
    async fn get_or_load<T, F, Fut, E>(
        &self,
        key: &str,
        options: &LoadOptions,
        loader: F,
    ) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Option<T>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let loader = Arc::new(std::sync::Mutex::new(Some(loader)));
        let make = |loader: Arc<std::sync::Mutex<Option<F>>>| -> Loader {
            Box::new(move || {
                let f = loader.lock().unwrap_or_else(|p| p.into_inner()).take();
                async move {
                    let Some(f) = f else {
                        return Err::<_, BoxError>("the loader already ran".into());
                    };
                    match f().await {
                        Ok(Some(v)) => Ok(Some(serde_json::to_vec(&v)?)),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e.into()),
                    }
                }
                .boxed()
            })
        };
        let bytes = self
            .get_or_load_bytes(key, options, make(Arc::clone(&loader)))
            .await?;
        let Some(bytes) = bytes else { return Ok(None) };
        if let Ok(v) = serde_json::from_slice(&bytes) {
            return Ok(Some(v));
        }
        // cached data of another shape: a miss; load it again if the loader is unused
        self.report_undecodable(key);
        if loader.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Err(Error::Codec(format!(
                "the value loaded for {key:?} does not decode as the requested type"
            )));
        }
        let bytes = self.load_bytes(key, options, make(loader)).await?;
        bytes
            .map(|b| serde_json::from_slice(&b).map_err(|e| Error::Codec(e.to_string())))
            .transpose()
    }
}

impl<C: Cache + ?Sized> CacheExt for C {}

/// Implements [`Cache`] for a handle holding `core: Arc<Core<_>>`.
macro_rules! delegate_cache {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::Cache for $ty {
            async fn get_bytes(&self, key: &str) -> $crate::Result<Option<bytes::Bytes>> {
                self.core.get(key).await
            }
            async fn get_many_bytes(
                &self,
                keys: &[&str],
            ) -> $crate::Result<Vec<Option<bytes::Bytes>>> {
                self.core.get_many(keys).await
            }
            async fn set_bytes(
                &self,
                key: &str,
                value: &[u8],
                options: &$crate::SetOptions,
            ) -> $crate::Result<()> {
                self.core.set_many(&[(key, value)], options).await
            }
            async fn set_many_bytes(
                &self,
                items: &[(&str, &[u8])],
                options: &$crate::SetOptions,
            ) -> $crate::Result<()> {
                self.core.set_many(items, options).await
            }
            async fn delete(&self, keys: &[&str]) -> $crate::Result<u64> {
                self.core.delete(keys).await
            }
            async fn exists(&self, key: &str) -> $crate::Result<bool> {
                self.core.exists(key).await
            }
            async fn invalidate_tags(&self, tags: &[&str]) -> $crate::Result<u64> {
                self.core.invalidate_tags(tags).await
            }
            async fn clear(&self) -> $crate::Result<()> {
                self.core.clear().await
            }
            async fn get_or_load_bytes(
                &self,
                key: &str,
                options: &$crate::LoadOptions,
                loader: $crate::Loader,
            ) -> $crate::Result<Option<bytes::Bytes>> {
                self.core.get_or_load(key, options, loader).await
            }
            async fn load_bytes(
                &self,
                key: &str,
                options: &$crate::LoadOptions,
                loader: $crate::Loader,
            ) -> $crate::Result<Option<bytes::Bytes>> {
                self.core.load(key, options, loader).await
            }
            fn metrics(&self) -> $crate::Metrics {
                self.core.metrics()
            }
            fn report_undecodable(&self, key: &str) {
                self.core.report_undecodable(key)
            }
            async fn flush(&self, timeout: std::time::Duration) -> $crate::Result<()> {
                self.core.flush(timeout).await
            }
            async fn shutdown(
                &self,
                deadline: std::time::Duration,
            ) -> $crate::Result<$crate::FlushReport> {
                self.core.shutdown(deadline).await
            }
            async fn pending_writes(&self) -> $crate::Result<u64> {
                self.core.pending_writes().await
            }
            async fn dead_writes(&self, limit: usize) -> $crate::Result<Vec<$crate::DeadWrite>> {
                self.core.dead_writes(limit).await
            }
        }
    };
}
pub(crate) use delegate_cache;
