//! Interleavings written out with pause points (feature `__test-hooks`): a load whose
//! entry is deleted or rewritten between its loader and its fill, a user key named like
//! another key's lock, and an invalidation subscription that lags.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redkit_cache::conformance::RecordingWriter;
use redkit_cache::{
    Cache, CacheConfig, CacheExt, Hooks, LoadOptions, MemoryCache, RedisCache, SetOptions,
    WriteBehind,
};
use redkit_core::redis::cmd;
use redkit_core::{ManualClock, Redis};

const BEFORE_FILL: &str = "load:before-fill";

type BoxFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<Vec<u8>>, redkit_cache::BoxError>> + Send>,
>;

fn config() -> CacheConfig {
    CacheConfig::new()
        .prefix(redkit_testkit::prefix("cache"))
        .jitter(0.0, Duration::ZERO)
}

/// Whether the entry of `key` exists in Redis (whatever it holds).
async fn entry_exists(redis: &Redis, cache: &RedisCache, key: &str) -> bool {
    let n: i64 = redis
        .query(cmd("EXISTS").arg(cache.entry_key(key).await.unwrap().as_str()))
        .await
        .unwrap();
    n == 1
}

/// A loader that returns `value` and counts its runs.
fn loader(
    calls: &Arc<AtomicU32>,
    value: &'static str,
) -> impl FnOnce() -> std::future::Ready<Result<Option<String>, std::io::Error>> + Send + 'static {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(value.to_string())))
    }
}

/// Issue 18 item 3: a loader read v1; meanwhile a writer stored v2 and deleted the key
/// (the record is gone). The load's fill must not bring v1 back, with or without the
/// load lock, and with an L1 on the loading handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_during_a_load_keeps_the_entry_absent() {
    for (name, base) in [
        ("plain", config()),
        (
            "single flight",
            config().distributed_single_flight(Duration::from_secs(5), Duration::from_secs(5)),
        ),
        ("L1", config().local(100, Duration::from_secs(60))),
    ] {
        let hooks = Hooks::new();
        let redis = redkit_testkit::redis().await;
        let loading = RedisCache::new(&redis, base.clone().test_hooks(Arc::clone(&hooks)))
            .await
            .unwrap();
        let writer = RedisCache::new(&redkit_testkit::redis().await, base)
            .await
            .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        hooks.arm(BEFORE_FILL);
        let load = {
            let (loading, loader) = (loading.clone(), loader(&calls, "v1"));
            tokio::spawn(async move {
                loading
                    .get_or_load::<String, _, _, _>("k", &LoadOptions::new(), loader)
                    .await
            })
        };
        // the loader has read v1 and stands before its fill
        hooks.reached(BEFORE_FILL, 1).await;
        writer.set("k", "v2", &SetOptions::new()).await.unwrap();
        assert_eq!(writer.delete(&["k"]).await.unwrap(), 1);
        hooks.release(BEFORE_FILL);
        // the load's caller gets what it loaded; the cache stays without the entry
        assert_eq!(
            load.await.unwrap().unwrap().as_deref(),
            Some("v1"),
            "{name}"
        );
        assert!(
            !entry_exists(&redis, &loading, "k").await,
            "{name}: v1 came back"
        );
        for c in [&loading, &writer] {
            assert_eq!(c.get_bytes("k").await.unwrap(), None, "{name}");
        }
        // the next read loads the record as it is now
        let now = writer
            .get_or_load::<String, _, _, _>("k", &LoadOptions::new(), loader(&calls, "v3"))
            .await
            .unwrap();
        assert_eq!(now.as_deref(), Some("v3"), "{name}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{name}");
        assert_eq!(
            loading.get::<String>("k").await.unwrap().as_deref(),
            Some("v3"),
            "{name}"
        );
    }
}

/// Issue 18 item 3: writes between a load's loader and its fill win, however close
/// together (two sets in one millisecond, a forced load, a refresh of a stale entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_a_load_are_never_overwritten_by_its_fill() {
    let hooks = Hooks::new();
    let redis = redkit_testkit::redis().await;
    let base = config().stale_while_revalidate(Duration::from_secs(60));
    let loading = RedisCache::new(&redis, base.clone().test_hooks(Arc::clone(&hooks)))
        .await
        .unwrap();
    let writer = RedisCache::new(&redkit_testkit::redis().await, base)
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let mut reached = 0;
    for round in 0..3u32 {
        hooks.arm(BEFORE_FILL);
        let key = format!("k{round}");
        let load = {
            let (loading, key, loader) = (loading.clone(), key.clone(), loader(&calls, "loaded"));
            tokio::spawn(async move {
                match round {
                    // a miss
                    0 => {
                        loading
                            .get_or_load::<String, _, _, _>(&key, &LoadOptions::new(), loader)
                            .await
                    }
                    // a forced load of a cached key
                    1 => {
                        loading
                            .set(&key, "before", &SetOptions::new())
                            .await
                            .unwrap();
                        let forced: redkit_cache::Loader = Box::new(move || {
                            let f: BoxFuture = Box::pin(async move {
                                let v = loader().await?;
                                Ok(v.map(|v| serde_json::to_vec(&v).unwrap()))
                            });
                            f
                        });
                        let bytes = loading
                            .load_bytes(&key, &LoadOptions::new(), forced)
                            .await?;
                        Ok(bytes.map(|b| serde_json::from_slice(&b).unwrap()))
                    }
                    // a stale entry refreshed in the background
                    _ => {
                        loading
                            .set(
                                &key,
                                "stale",
                                &SetOptions::new().ttl(Duration::from_millis(1)),
                            )
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        loading
                            .get_or_load::<String, _, _, _>(&key, &LoadOptions::new(), loader)
                            .await
                    }
                }
            })
        };
        reached += 1;
        hooks.reached(BEFORE_FILL, reached).await;
        // two writes back to back (usually in one millisecond, equal headers)
        writer.set(&key, "first", &SetOptions::new()).await.unwrap();
        writer
            .set(&key, "second", &SetOptions::new())
            .await
            .unwrap();
        hooks.release(BEFORE_FILL);
        load.await.unwrap().unwrap();
        hooks.reached("load:filled", u64::from(round) + 1).await;
        for c in [&loading, &writer] {
            assert_eq!(
                c.get::<String>(&key).await.unwrap().as_deref(),
                Some("second"),
                "round {round}"
            );
        }
    }
}

/// Issue 18 item 3, exactly: two writes in one millisecond with the same TTL have equal
/// headers. A refresh that saw the first must not overwrite the second. (Two processes
/// whose clocks differ by a millisecond do this; a manual clock shows it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_never_overwrites_a_write_with_an_equal_header() {
    let start = Duration::from_secs(1_700_000_000);
    let clock = ManualClock::new(start);
    let hooks = Hooks::new();
    let cache = MemoryCache::with_clock(
        config()
            .stale_while_revalidate(Duration::from_secs(60))
            .test_hooks(Arc::clone(&hooks)),
        clock.clone(),
    )
    .unwrap();
    let other = cache.handle();
    let short = SetOptions::new().ttl(Duration::from_millis(1));
    cache.set("k", "first", &short).await.unwrap();
    clock.advance(Duration::from_millis(1));
    hooks.arm(BEFORE_FILL);
    let calls = Arc::new(AtomicU32::new(0));
    // stale: served at once, refreshed in the background
    let served = cache
        .get_or_load::<String, _, _, _>("k", &LoadOptions::new(), loader(&calls, "loaded"))
        .await
        .unwrap();
    assert_eq!(served.as_deref(), Some("first"));
    hooks.reached(BEFORE_FILL, 1).await;
    // another process, its clock one millisecond behind, writes: the same header
    clock.set(start);
    other.set("k", "second", &short).await.unwrap();
    hooks.release(BEFORE_FILL);
    hooks.reached("load:filled", 1).await;
    assert_eq!(
        other.get::<String>("k").await.unwrap().as_deref(),
        Some("second")
    );
}

/// Issue 18 item 23: with write-behind, entries and load locks share the shard's hash
/// tag; a user key named like another key's lock must not be that lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_key_named_like_a_lock_leaves_single_flight_alone() {
    let hooks = Hooks::new();
    let redis = redkit_testkit::redis().await;
    let base = config()
        .distributed_single_flight(Duration::from_secs(5), Duration::from_secs(2))
        .write_behind(RecordingWriter::new(), WriteBehind::new().flusher(false));
    let a = RedisCache::new(&redis, base.clone().test_hooks(Arc::clone(&hooks)))
        .await
        .unwrap();
    let b = RedisCache::new(&redkit_testkit::redis().await, base)
        .await
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    // a value under `foo:lock` does not hold foo's lock: foo loads at once
    b.set("foo:lock", "user data", &SetOptions::new())
        .await
        .unwrap();
    let started = Instant::now();
    let v = a
        .get_or_load::<String, _, _, _>("foo", &LoadOptions::new(), loader(&calls, "foo"))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("foo"));
    assert_eq!(a.metrics().lock_waits, 0, "{:?}", started.elapsed());
    assert_eq!(
        b.get::<String>("foo:lock").await.unwrap().as_deref(),
        Some("user data")
    );
    // a write of `bar:lock` while bar's load holds its lock does not take the lock away
    hooks.arm(BEFORE_FILL);
    let load = {
        let (a, loader) = (a.clone(), loader(&calls, "bar"));
        tokio::spawn(async move {
            a.get_or_load::<String, _, _, _>("bar", &LoadOptions::new(), loader)
                .await
        })
    };
    hooks.reached(BEFORE_FILL, 1).await;
    b.set("bar:lock", "user data", &SetOptions::new())
        .await
        .unwrap();
    hooks.release(BEFORE_FILL);
    assert_eq!(load.await.unwrap().unwrap().as_deref(), Some("bar"));
    assert_eq!(
        b.get::<String>("bar").await.unwrap().as_deref(),
        Some("bar")
    );
    assert_eq!(
        b.get::<String>("bar:lock").await.unwrap().as_deref(),
        Some("user data")
    );
}

/// Issue 18 item 24: a subscription that lags (more invalidations than its buffer) empties
/// the L1 and keeps serving from it, never stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_recovers_after_the_subscription_lags() {
    let server = redkit_testkit::shared();
    let small = Redis::from_config(
        redkit_core::RedisConfig::builder()
            .url(server.url())
            .subscription_buffer(4)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let hooks = Hooks::new();
    let base = config().local(1000, Duration::from_secs(60));
    let reader = RedisCache::new(&small, base.clone().test_hooks(Arc::clone(&hooks)))
        .await
        .unwrap();
    let redis = redkit_testkit::redis().await;
    let writer = RedisCache::new(&redis, base).await.unwrap();
    writer.set("k", "old", &SetOptions::new()).await.unwrap();
    let hits = |c: &RedisCache| c.metrics().l1_hits;
    // the reader serves k from L1 (once the write's own message has passed)
    let start = Instant::now();
    while hits(&reader) == 0 {
        assert_eq!(
            reader.get::<String>("k").await.unwrap().as_deref(),
            Some("old")
        );
        assert!(start.elapsed() < Duration::from_secs(2), "never from L1");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // the reader's listener stops at the next message; far more arrive than its buffer
    // holds, the change of k among the dropped ones
    hooks.arm("listener:message");
    writer.set("other", "x", &SetOptions::new()).await.unwrap();
    hooks.reached("listener:message", 1).await;
    for i in 0..20 {
        writer
            .set(&format!("flood{i}"), &i, &SetOptions::new())
            .await
            .unwrap();
    }
    writer.set("k", "new", &SetOptions::new()).await.unwrap();
    let lagged = hooks.count("listener:lagged");
    hooks.release("listener:message");
    hooks.reached("listener:lagged", lagged + 1).await;
    // L1 was emptied: the change whose message was lost is seen at once...
    assert_eq!(
        reader.get::<String>("k").await.unwrap().as_deref(),
        Some("new")
    );
    assert!(reader.link_up());
    // ...and L1 serves hits again, never the old value
    let before = hits(&reader);
    let start = Instant::now();
    while hits(&reader) < before + 3 {
        assert_eq!(
            reader.get::<String>("k").await.unwrap().as_deref(),
            Some("new")
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "L1 off after a lag: {:?}",
            reader.metrics()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // and stays coherent: a later change reaches it by message
    writer.set("k", "newer", &SetOptions::new()).await.unwrap();
    let start = Instant::now();
    while reader.get::<String>("k").await.unwrap().as_deref() != Some("newer") {
        assert!(start.elapsed() < Duration::from_secs(2), "missed a change");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
