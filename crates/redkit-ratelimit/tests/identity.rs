//! A limiter's state is keyed by every parameter of its limits: two limiters that differ
//! only in capacity (or rate, block, window alignment) never share a counter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use redkit_core::Redis;
use redkit_ratelimit::{Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter};

const MINUTE: Duration = Duration::from_secs(60);

fn on_redis(redis: &Redis, prefix: &str, limit: Limit, aligned: bool) -> RedisRateLimiter {
    RedisRateLimiter::builder(redis.clone())
        .prefix(prefix)
        .aligned_windows(aligned)
        .limit(limit)
        .build()
        .unwrap()
}

/// Issue 18 item 25: logins (5 per minute) and the API (1000 per minute), both keyed by
/// user under one prefix. With keys made of algorithm and window only, API traffic spent
/// the login quota.
async fn api_traffic_never_spends_the_login_quota(login: &dyn RateLimiter, api: &dyn RateLimiter) {
    for _ in 0..20 {
        assert!(api.check("user:7", 1).await.unwrap().allowed);
    }
    let d = login.check("user:7", 1).await.unwrap();
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.remaining, 4, "the login limit has its own count: {d:?}");
    assert_eq!(api.peek("user:7").await.unwrap().remaining, 980);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_differing_only_in_capacity_keep_apart_on_redis() {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-id");
    let login = on_redis(&redis, &prefix, Limit::fixed_window(5, MINUTE), false);
    let api = on_redis(&redis, &prefix, Limit::fixed_window(1000, MINUTE), false);
    api_traffic_never_spends_the_login_quota(&login, &api).await;
    assert_ne!(
        login.state_keys("user:7").unwrap(),
        api.state_keys("user:7").unwrap()
    );

    // every other parameter too: rate, block, aligned windows
    let pairs = [
        (
            Limit::gcra(10, MINUTE).burst(5),
            Limit::gcra(20, MINUTE).burst(5),
            false,
            false,
        ),
        (
            Limit::sliding_log(5, MINUTE),
            Limit::sliding_log(5, MINUTE).block_for(MINUTE),
            false,
            false,
        ),
        (
            Limit::fixed_window(5, MINUTE),
            Limit::fixed_window(5, MINUTE),
            false,
            true,
        ),
    ];
    for (a, b, aligned_a, aligned_b) in pairs {
        let la = on_redis(&redis, &prefix, a.clone(), aligned_a);
        let lb = on_redis(&redis, &prefix, b.clone(), aligned_b);
        assert!(la.check("user:8", 5).await.unwrap().allowed, "{a:?}");
        let d = lb.check("user:8", 1).await.unwrap();
        assert!(
            d.allowed && d.remaining == 4,
            "{b:?} shared {a:?}'s state: {d:?}"
        );
        la.reset("user:8").await.unwrap();
        lb.reset("user:8").await.unwrap();
    }

    // a name is part of the identity: two purposes with equal numbers keep apart
    let login = on_redis(
        &redis,
        &prefix,
        Limit::fixed_window(5, MINUTE).name("login"),
        false,
    );
    let reset = on_redis(
        &redis,
        &prefix,
        Limit::fixed_window(5, MINUTE).name("password-reset"),
        false,
    );
    assert_eq!(login.peek("user:7").await.unwrap().remaining, 5);
    assert!(login.check("user:7", 5).await.unwrap().allowed);
    assert!(!login.check("user:7", 1).await.unwrap().allowed);
    let d = reset.check("user:7", 1).await.unwrap();
    assert!(
        d.allowed && d.remaining == 4,
        "password resets spent the login quota: {d:?}"
    );
}

/// The memory backend keeps each limiter's states in its own map, so two limiters never
/// shared; this holds it to the same answers.
#[tokio::test]
async fn limits_differing_only_in_capacity_keep_apart_in_memory() {
    let login = MemoryRateLimiter::builder()
        .limit(Limit::fixed_window(5, MINUTE))
        .build()
        .unwrap();
    let api = MemoryRateLimiter::builder()
        .limit(Limit::fixed_window(1000, MINUTE))
        .build()
        .unwrap();
    api_traffic_never_spends_the_login_quota(&login, &api).await;
    // one limiter with both: two states, consumed together
    let both = MemoryRateLimiter::builder()
        .limit(Limit::fixed_window(5, MINUTE).name("login"))
        .limit(Limit::fixed_window(1000, MINUTE).name("api"))
        .build()
        .unwrap();
    let d = both.check("user:7", 2).await.unwrap();
    assert_eq!(
        d.statuses.iter().map(|s| s.remaining).collect::<Vec<_>>(),
        [3, 998]
    );
}
