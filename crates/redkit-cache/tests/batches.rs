//! Writes that fail partway (issue 18 item 7, cache part): nothing of a failed call stays.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use redkit_cache::conformance::RecordingWriter;
use redkit_cache::{Cache, CacheConfig, CacheExt, RedisCache, SetOptions, WriteBehind};
use redkit_core::Redis;
use redkit_core::redis::cmd;
use redkit_testkit::Cluster;

async fn exists(redis: &Redis, key: &str) -> bool {
    let n: i64 = redis.query(cmd("EXISTS").arg(key)).await.unwrap();
    n == 1
}

/// A write-behind write whose log cannot take its record (here: the log key holds a
/// string) fails as a whole: the entry is not changed without its record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_behind_write_that_cannot_be_logged_changes_nothing() {
    let redis = redkit_testkit::redis().await;
    let cache = RedisCache::new(
        &redis,
        CacheConfig::new()
            .prefix(redkit_testkit::prefix("cache"))
            .write_behind(RecordingWriter::new(), WriteBehind::new().flusher(false)),
    )
    .await
    .unwrap();
    cache.set("k", "before", &SetOptions::new()).await.unwrap();
    let log = cache.log_key("k").unwrap().unwrap().clone();
    let _: () = redis.query(cmd("DEL").arg(log.as_str())).await.unwrap();
    let _: () = redis
        .query(cmd("SET").arg(log.as_str()).arg("not a stream"))
        .await
        .unwrap();
    let e = cache
        .set("k", "after", &SetOptions::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("before")
    );
    let e = cache.delete(&["k"]).await.unwrap_err();
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    assert!(exists(&redis, cache.entry_key("k").await.unwrap().as_str()).await);
}

/// `set_many` over two cluster slots whose second master refuses writes (out of memory):
/// the caller gets an error and the first slot's entry does not stay either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_on_one_slot_leaves_no_entry_on_the_others() {
    let cluster = Cluster::start();
    let redis = cluster.redis().await;
    let cache = RedisCache::new(
        &redis,
        CacheConfig::new().prefix(redkit_testkit::prefix("cache")),
    )
    .await
    .unwrap();
    // two keys on different masters
    let a = "user:0".to_string();
    let b = (1..100)
        .map(|i| format!("user:{i}"))
        .find(|k| cluster.master_index(k) != cluster.master_index(&a))
        .unwrap();
    let full = cluster.master_index(&b);
    cluster.nodes()[full].cli(&["config", "set", "maxmemory", "1"]);
    let e = cache
        .set_many_bytes(&[(&a, b"1"), (&b, b"2")], &SetOptions::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("OOM"), "{e}");
    for k in [&a, &b] {
        let entry = cache.entry_key(k).await.unwrap();
        assert!(!exists(&redis, entry.as_str()).await, "{k} stayed");
        assert_eq!(cache.get_bytes(k).await.unwrap(), None);
    }
    cluster.nodes()[full].cli(&["config", "set", "maxmemory", "0"]);
    cache
        .set_many_bytes(&[(&a, b"1"), (&b, b"2")], &SetOptions::new())
        .await
        .unwrap();
    assert_eq!(
        cache.get_bytes(&b).await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
}
