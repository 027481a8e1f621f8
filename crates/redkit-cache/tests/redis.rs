//! Redis-only behaviour: stampedes across handles, L1 coherence between processes and
//! when the invalidation link fails, a load that outlives its lock, foreign data in an
//! entry, and a server that goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redkit_cache::{Cache, CacheConfig, CacheExt, Error, LoadOptions, RedisCache, SetOptions};
use redkit_core::Redis;
use redkit_core::redis::cmd;
use redkit_testkit::{Proxy, Server};

fn config() -> CacheConfig {
    CacheConfig::new().prefix(redkit_testkit::prefix("cache"))
}

/// 1,000 concurrent `get_or_load` calls on one cold key, spread over four handles.
async fn stampede(config: CacheConfig) -> u32 {
    let mut caches = Vec::new();
    for _ in 0..4 {
        let redis = redkit_testkit::redis().await;
        caches.push(RedisCache::new(&redis, config.clone()).await.unwrap());
    }
    let calls = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let cache = caches[i % 4].clone();
        let calls = Arc::clone(&calls);
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("report:today", &LoadOptions::new(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok::<_, std::io::Error>(Some(vec![7u8; 64]))
                })
                .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Some(vec![7u8; 64]));
    }
    calls.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_loads_once_with_distributed_single_flight() {
    let config = config().distributed_single_flight(Duration::from_secs(5), Duration::from_secs(5));
    assert_eq!(stampede(config).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stampede_loads_once_per_process_without_it() {
    assert_eq!(stampede(config()).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_never_serves_an_overwritten_value_from_l1() {
    let config = config().local(1000, Duration::from_secs(60));
    let writer = RedisCache::new(&redkit_testkit::redis().await, config.clone())
        .await
        .unwrap();
    let reader = RedisCache::new(&redkit_testkit::redis().await, config)
        .await
        .unwrap();
    let mut worst = Duration::ZERO;
    for round in 0..50u32 {
        writer
            .set("price", &round, &SetOptions::new())
            .await
            .unwrap();
        // the reader caches the value in its L1...
        let start = Instant::now();
        loop {
            if reader.get::<u32>("price").await.unwrap() == Some(round) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_millis(500),
                "round {round}"
            );
            tokio::task::yield_now().await;
        }
        worst = worst.max(start.elapsed());
    }
    // once the write's own message has passed, the reader serves it from L1
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = reader.metrics().l1_hits;
    for _ in 0..3 {
        assert_eq!(reader.get::<u32>("price").await.unwrap(), Some(49));
    }
    assert!(
        reader.metrics().l1_hits >= before + 2,
        "{:?}",
        reader.metrics()
    );
    // ...and reads each overwrite within the message delivery time, far below the
    // 60 s the L1 would otherwise keep it
    assert!(worst < Duration::from_millis(500), "worst {worst:?}");
    // a delete and a clear reach the other L1 too
    writer.delete(&["price"]).await.unwrap();
    let start = Instant::now();
    while reader.get_bytes("price").await.unwrap().is_some() {
        assert!(start.elapsed() < Duration::from_millis(500));
        tokio::task::yield_now().await;
    }
    writer
        .set("price", &1u32, &SetOptions::new())
        .await
        .unwrap();
    while reader.get::<u32>("price").await.unwrap() != Some(1) {
        tokio::task::yield_now().await;
    }
    writer.clear().await.unwrap();
    let start = Instant::now();
    while reader.get_bytes("price").await.unwrap().is_some() {
        assert!(start.elapsed() < Duration::from_millis(500));
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_is_dropped_when_the_invalidation_link_goes_silent() {
    let server = Server::start();
    let proxy = Proxy::start(&server.addr()).await;
    let through_proxy = Redis::from_config(
        server
            .config()
            .url(proxy.url())
            .response_timeout(Duration::from_millis(300))
            .subscription_ping_interval(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let config = config().local(1000, Duration::from_secs(60));
    let reader = RedisCache::new(&through_proxy, config.clone())
        .await
        .unwrap();
    let writer = RedisCache::new(&server.redis().await, config)
        .await
        .unwrap();
    writer.set("k", "old", &SetOptions::new()).await.unwrap();
    // (the write's own message may still be on its way: read until L1 serves it)
    let start = Instant::now();
    while reader.metrics().l1_hits == 0 {
        assert_eq!(
            reader.get::<String>("k").await.unwrap().as_deref(),
            Some("old")
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "never served from L1"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // the reader's connections go silent: it misses the write's message
    proxy.drop_traffic(true);
    writer.set("k", "new", &SetOptions::new()).await.unwrap();
    let start = Instant::now();
    while reader.link_up() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "silence noticed within ping interval + response timeout"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // from now on the old value is never served: L1 is empty and bypassed
    let stale = reader.get::<String>("k").await;
    assert!(
        !matches!(stale.as_ref().map(|v| v.as_deref()), Ok(Some("old"))),
        "{stale:?}"
    );
    proxy.drop_traffic(false);
    proxy.cut();
    let start = Instant::now();
    loop {
        if let Ok(v) = reader.get::<String>("k").await {
            assert_ne!(v.as_deref(), Some("old"), "old value after reconnect");
            if v.as_deref() == Some("new") {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while !reader.link_up() {
        assert!(start.elapsed() < Duration::from_secs(10), "link not back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_outlives_its_lock_does_not_overwrite_newer_data() {
    let redis = redkit_testkit::redis().await;
    let config =
        config().distributed_single_flight(Duration::from_millis(100), Duration::from_secs(5));
    let slow = RedisCache::new(&redis, config.clone()).await.unwrap();
    let other = RedisCache::new(&redkit_testkit::redis().await, config)
        .await
        .unwrap();
    let loading = tokio::spawn({
        let slow = slow.clone();
        async move {
            slow.get_or_load("k", &LoadOptions::new(), || async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                Ok::<_, std::io::Error>(Some("stale from the slow loader".to_string()))
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // the lock expired; a newer value is written meanwhile
    other.set("k", "fresh", &SetOptions::new()).await.unwrap();
    let loaded = loading.await.unwrap().unwrap();
    assert_eq!(
        loaded.as_deref(),
        Some("stale from the slow loader"),
        "its caller still gets it"
    );
    assert_eq!(
        other.get::<String>("k").await.unwrap().as_deref(),
        Some("fresh")
    );
    assert_eq!(
        slow.get::<String>("k").await.unwrap().as_deref(),
        Some("fresh")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_data_in_an_entry_is_a_reported_miss() {
    let redis = redkit_testkit::redis().await;
    let cache = RedisCache::new(&redis, config()).await.unwrap();
    let key = cache.entry_key("k").await.unwrap();
    let _: () = redis
        .query(
            cmd("SET")
                .arg(key.as_str())
                .arg("written by something else"),
        )
        .await
        .unwrap();
    assert_eq!(cache.get_bytes("k").await.unwrap(), None);
    assert_eq!(cache.metrics().undecodable, 1);
    let v = cache
        .get_or_load("k", &LoadOptions::new(), || async {
            Ok::<_, std::io::Error>(Some(5))
        })
        .await
        .unwrap();
    assert_eq!(v, Some(5));
    assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_tags_and_locks_carry_real_ttls() {
    let redis = redkit_testkit::redis().await;
    let cache = RedisCache::new(
        &redis,
        config()
            .ttl(Duration::from_secs(10))
            .jitter(0.0, Duration::ZERO)
            .stale_while_revalidate(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    cache
        .set("k", &1, &SetOptions::new().tags(["t"]))
        .await
        .unwrap();
    let pttl: i64 = redis
        .query(cmd("PTTL").arg(cache.entry_key("k").await.unwrap().as_str()))
        .await
        .unwrap();
    assert!(
        (14_000..=15_000).contains(&pttl),
        "ttl + stale window, got {pttl}"
    );
    let tag_ttl: i64 = redis
        .query(cmd("PTTL").arg(cache.tag_key("t").await.unwrap().as_str()))
        .await
        .unwrap();
    assert!(
        (14_000..=15_000).contains(&tag_ttl),
        "the tag lives as long as its entry, got {tag_ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_a_store_error() {
    let server = Server::start();
    let redis = Redis::from_config(
        server
            .config()
            .response_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let cache = RedisCache::new(&redis, config()).await.unwrap();
    cache.set("k", &1, &SetOptions::new()).await.unwrap();
    drop(server);
    let e = cache.get::<i32>("k").await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    let e = cache
        .get_or_load("k2", &LoadOptions::new(), || async {
            Ok::<_, std::io::Error>(Some(1))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
}
