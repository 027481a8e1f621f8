//! The deny cache (repeated denials answered in process) and waiting until allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use redkit_core::ManualClock;
use redkit_ratelimit::{Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter};

const HOUR: Duration = Duration::from_secs(3600);

async fn pair(cache: usize, limit: Limit) -> (RedisRateLimiter, RedisRateLimiter) {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-local");
    let cached = RedisRateLimiter::builder(redis.clone())
        .prefix(&prefix)
        .limit(limit.clone())
        .deny_cache(cache)
        .build()
        .unwrap();
    let plain = RedisRateLimiter::builder(redis)
        .prefix(&prefix)
        .limit(limit)
        .build()
        .unwrap();
    (cached, plain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_denials_are_answered_locally_until_retry_after() {
    let (cached, other) = pair(100, Limit::fixed_window(2, HOUR)).await;
    let k = redkit_testkit::prefix("k");
    assert!(cached.check(&k, 2).await.unwrap().allowed);
    let first = cached.check(&k, 1).await.unwrap();
    assert!(!first.allowed);
    // another process resets the key: the cache does not see it (it may deny a little
    // too long, never admit too much)
    other.reset(&k).await.unwrap();
    let local = cached.check(&k, 1).await.unwrap();
    assert!(!local.allowed, "the denial was not remembered");
    assert!(local.retry_after.unwrap() <= first.retry_after.unwrap());
    assert!(
        other.check(&k, 1).await.unwrap().allowed,
        "Redis itself was reset"
    );
    // what this process does on purpose it sees at once
    cached.reset(&k).await.unwrap();
    assert!(cached.check(&k, 1).await.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_cost_still_asks_redis_and_the_cache_is_bounded() {
    let (cached, other) = pair(2, Limit::fixed_window(5, HOUR)).await;
    let k = redkit_testkit::prefix("k");
    assert!(cached.check(&k, 4).await.unwrap().allowed);
    assert!(!cached.check(&k, 3).await.unwrap().allowed);
    assert!(
        cached.check(&k, 1).await.unwrap().allowed,
        "a denial of 3 covered a check of 1"
    );

    // forgetting frees the slot; then three denied keys, room for two: the third is
    // decided by Redis every time
    cached.reset(&k).await.unwrap();
    let keys: Vec<String> = (0..3)
        .map(|i| redkit_testkit::prefix(&format!("b{i}")))
        .collect();
    for key in &keys {
        cached.check(key, 5).await.unwrap();
        assert!(!cached.check(key, 1).await.unwrap().allowed);
    }
    for key in &keys {
        other.reset(key).await.unwrap();
    }
    let passed = allowed(&cached, &keys).await;
    assert_eq!(passed, [false, false, true], "only two denials remembered");
}

async fn allowed(l: &RedisRateLimiter, keys: &[String]) -> Vec<bool> {
    let mut out = Vec::new();
    for k in keys {
        out.push(l.check(k, 1).await.unwrap().allowed);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_sleeps_until_allowed_within_its_bound() {
    let (l, _) = pair(0, Limit::gcra(10, Duration::from_secs(1)).burst(1)).await;
    let k = redkit_testkit::prefix("wait");
    assert!(l.check(&k, 1).await.unwrap().allowed);
    let started = Instant::now();
    let d = l.wait(&k, 1, Duration::from_millis(20)).await.unwrap();
    assert!(!d.allowed, "a 100 ms wait fits no 20 ms bound");
    assert!(started.elapsed() < Duration::from_millis(50));
    let d = l.wait(&k, 1, Duration::MAX).await.unwrap();
    assert!(d.allowed);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(80) && waited < Duration::from_millis(400),
        "{waited:?}"
    );
}

#[tokio::test]
async fn wait_on_memory_follows_the_clock_of_the_runtime() {
    let l = MemoryRateLimiter::builder()
        .clock(ManualClock::new(Duration::from_secs(1_700_000_000)))
        .limit(Limit::fixed_window(1, HOUR))
        .build()
        .unwrap();
    assert!(l.check("k", 1).await.unwrap().allowed);
    // the limiter's own clock does not move: the wait gives up at its bound
    let d = l.wait("k", 1, Duration::from_millis(10)).await.unwrap();
    assert!(!d.allowed);
}

/// A check sent before this process's own reset, and denied by Redis before the reset
/// ran, came back after the reset had cleared the cache and was remembered: the key stayed
/// denied in this process for the whole retry_after (an hour here) although Redis had
/// been reset through this limiter, which the README says is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_answered_across_a_reset_of_this_process_is_not_remembered() {
    let (cached, other) = pair(100, Limit::fixed_window(1, HOUR)).await;
    for round in 0..5 {
        let k = redkit_testkit::prefix(&format!("across{round}"));
        assert!(cached.check(&k, 1).await.unwrap().allowed);
        // the check is queued first, so Redis decides it (denied) before the reset
        let (denied, reset) = tokio::join!(cached.check(&k, 1), cached.reset(&k));
        assert!(!denied.unwrap().allowed);
        reset.unwrap();
        assert!(
            other.peek(&k).await.unwrap().allowed,
            "round {round}: Redis was reset"
        );
        assert!(
            cached.check(&k, 1).await.unwrap().allowed,
            "round {round}: a stale denial answered after this process's reset"
        );
    }
}
