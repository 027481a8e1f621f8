//! Patterns that must not lose keys refuse a server that may evict them (issue: locks
//! disappeared under memory pressure). First the hazard itself, with the check switched
//! off; then every builder's refusal and its explicit opt-out.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use redkit::Error as CoreError;
use redkit::lock::{Lock, RedisLock};
use redkit::queue::{QueueConfig, RedisQueue};
use redkit::ratelimit::{Limit, RedisRateLimiter};
use redkit::session::{RedisSessionStore, SessionConfig};
use redkit_testkit::Server;

fn evicting() -> Server {
    Server::builder()
        .config("maxmemory 4mb")
        .config("maxmemory-policy volatile-lru")
        .start()
}

/// What the refusal guards against: under `volatile-lru`, writes of keys with an expiry
/// (a cache's) evict a held lock, and a second caller takes it while the first holder
/// still believes it holds it.
#[tokio::test]
async fn a_held_lock_is_evicted_under_volatile_lru() {
    let server = evicting();
    let redis = server.redis().await;
    let locks = RedisLock::builder(redis.clone())
        .prefix(redkit_testkit::prefix("evict"))
        .allow_eviction(true)
        .build()
        .unwrap();
    let first = locks
        .try_acquire("invoice:7", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a free lock is taken");
    // Cache-like writes with an expiry, far past maxmemory.
    let value = "x".repeat(16 * 1024);
    for i in 0..2_000 {
        let _: () = redis
            .query(
                redkit::core::redis::cmd("SET")
                    .arg(format!("cache:{i}"))
                    .arg(&value)
                    .arg("PX")
                    .arg(600_000),
            )
            .await
            .unwrap();
    }
    let second = locks
        .try_acquire("invoice:7", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        second.is_some(),
        "the held lock should have been evicted (the hazard this check prevents)"
    );
    assert!(!first.is_lost(), "the first holder is not told");
}

fn is_refusal(err: &CoreError, policy: &str) -> bool {
    matches!(err, CoreError::UnsupportedServer(m) if m.contains(policy) && m.contains("allow_eviction"))
}

#[tokio::test]
async fn every_pattern_that_must_keep_its_keys_refuses_an_evicting_server() {
    let server = evicting();
    let redis = server.redis().await;
    let prefix = redkit_testkit::prefix("refuse");

    let err = RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, redkit::lock::Error::Core(e) if is_refusal(e, "volatile-lru")),
        "{err:?}"
    );
    RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .allow_eviction(true)
        .build()
        .unwrap();

    let err = RedisQueue::new(&redis, "jobs", QueueConfig::new().prefix(&prefix)).unwrap_err();
    assert!(err.to_string().contains("volatile-lru"), "{err}");
    RedisQueue::new(
        &redis,
        "jobs",
        QueueConfig::new().prefix(&prefix).allow_eviction(true),
    )
    .unwrap();

    let err = RedisSessionStore::new(&redis, SessionConfig::new().prefix(&prefix)).unwrap_err();
    assert!(err.to_string().contains("volatile-lru"), "{err}");
    RedisSessionStore::new(
        &redis,
        SessionConfig::new().prefix(&prefix).allow_eviction(true),
    )
    .unwrap();

    let limit = || Limit::fixed_window(10, Duration::from_secs(60));
    let err = RedisRateLimiter::builder(redis.clone())
        .prefix(&prefix)
        .limit(limit())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("volatile-lru"), "{err}");
    RedisRateLimiter::builder(redis.clone())
        .prefix(&prefix)
        .limit(limit())
        .allow_eviction(true)
        .build()
        .unwrap();
}

#[tokio::test]
async fn noeviction_servers_build_as_before() {
    let redis = redkit_testkit::redis().await;
    if redis.server_info().evicts_keys() == Some(true) {
        return; // a REDIS_URL server with an evicting policy: nothing to show here
    }
    let prefix = redkit_testkit::prefix("noevict");
    RedisLock::builder(redis.clone())
        .prefix(&prefix)
        .build()
        .unwrap();
    RedisQueue::new(&redis, "jobs", QueueConfig::new().prefix(&prefix)).unwrap();
    RedisSessionStore::new(&redis, SessionConfig::new().prefix(&prefix)).unwrap();
    RedisRateLimiter::builder(redis.clone())
        .prefix(&prefix)
        .limit(Limit::fixed_window(10, Duration::from_secs(60)))
        .build()
        .unwrap();
}
