//! Hostile numbers through the public API (issue 18 item 10): every Duration and integer
//! at its extremes is a typed error before anything is sent, or is handled exactly;
//! nothing panics or is silently cut short.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{ManualClock, Redis, redis};
use redkit_ratelimit::{
    Error, Limit, MAX_CAPACITY, MAX_WINDOW, MemoryRateLimiter, RateLimiter, RedisRateLimiter,
};

const HOUR: Duration = Duration::from_secs(3600);
const T0: Duration = Duration::from_secs(1_700_000_000);

fn redis_limiter(redis: &Redis, limit: Limit) -> RedisRateLimiter {
    RedisRateLimiter::builder(redis.clone())
        .prefix(redkit_testkit::prefix("rl-in"))
        .limit(limit)
        .build()
        .unwrap()
}

fn memory_limiter(clock: &ManualClock, limit: Limit) -> MemoryRateLimiter {
    MemoryRateLimiter::builder()
        .clock(clock.clone())
        .limit(limit)
        .build()
        .unwrap()
}

#[test]
fn extreme_limits_are_refused_at_build() {
    let s = Duration::from_secs(1);
    for bad in [
        Limit::fixed_window(0, s),
        Limit::fixed_window(u64::MAX, s),
        Limit::fixed_window(10, Duration::MAX),
        Limit::fixed_window(10, Duration::ZERO),
        Limit::fixed_window(10, s).block_for(Duration::MAX),
        Limit::gcra(u64::MAX, Duration::MAX),
        Limit::gcra(10, s).burst(u64::MAX),
        Limit::token_bucket(u64::MAX, u64::MAX, Duration::MAX),
        Limit::sliding_log(u64::MAX, s),
    ] {
        let built = MemoryRateLimiter::builder().limit(bad.clone()).build();
        assert!(matches!(built, Err(Error::InvalidLimit(_))), "{bad:?}");
    }
    // the largest accepted ones build
    for ok in [
        Limit::fixed_window(MAX_CAPACITY, MAX_WINDOW).block_for(MAX_WINDOW),
        Limit::gcra(1, MAX_WINDOW).burst(1),
        Limit::gcra(1_000_000, s),
    ] {
        MemoryRateLimiter::builder().limit(ok).build().unwrap();
    }
}

/// Every out-of-range request of every kind, on one limiter: a typed error each, and the
/// key untouched afterwards.
async fn bad_requests_are_errors(l: &dyn RateLimiter) {
    let k = "k";
    assert!(matches!(
        l.check(k, 0).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        l.check(k, u64::MAX).await,
        Err(Error::CostTooLarge { cost: u64::MAX, .. })
    ));
    assert!(matches!(
        l.penalty(k, u64::MAX).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        l.penalty(k, MAX_CAPACITY + 1).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        l.reward(k, u64::MAX).await,
        Err(Error::InvalidArgument(_))
    ));
    for d in [
        Duration::ZERO,
        Duration::MAX,
        MAX_WINDOW + Duration::from_nanos(1),
    ] {
        assert!(
            matches!(l.block(k, d).await, Err(Error::InvalidArgument(_))),
            "{d:?}"
        );
    }
    let d = l.peek(k).await.unwrap();
    assert_eq!(
        d.remaining, d.limit,
        "a refused request changed the key: {d:?}"
    );
}

/// Zero points are no-ops, not errors.
async fn zero_points_change_nothing(l: &dyn RateLimiter) {
    let limit = l.peek("k").await.unwrap().limit;
    assert_eq!(l.penalty("k", 0).await.unwrap().remaining, limit);
    assert_eq!(l.reward("k", 0).await.unwrap().remaining, limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_requests_are_typed_errors_and_send_nothing() {
    let redis = redkit_testkit::redis().await;
    let clock = ManualClock::new(T0);
    for limit in [
        Limit::fixed_window(5, HOUR),
        Limit::sliding_window(5, HOUR),
        Limit::sliding_log(5, HOUR),
        Limit::gcra(5, HOUR),
    ] {
        let on_redis = redis_limiter(&redis, limit.clone());
        bad_requests_are_errors(&on_redis).await;
        let key = on_redis.state_keys("k").unwrap().remove(0);
        let exists: i64 = redis.query(redis::cmd("EXISTS").arg(key)).await.unwrap();
        assert_eq!(exists, 0, "{limit:?}: something was written");
        zero_points_change_nothing(&on_redis).await;
        let memory = memory_limiter(&clock, limit);
        bad_requests_are_errors(&memory).await;
        zero_points_change_nothing(&memory).await;
    }
}

/// The largest penalty on the slowest bucket: 2^40 units of 2^45 µs each overflowed the
/// memory backend's i64 arithmetic (a panic in debug builds); the TAT now saturates and is
/// capped about 1.1 years ahead, as in the script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_penalty_on_the_slowest_bucket_saturates() {
    let redis = redkit_testkit::redis().await;
    let clock = ManualClock::new(T0);
    let slowest = Limit::gcra(1, MAX_WINDOW).burst(1);
    let memory = memory_limiter(&clock, slowest.clone());
    let on_redis = redis_limiter(&redis, slowest);
    for l in [&memory as &dyn RateLimiter, &on_redis] {
        let d = l.penalty("k", MAX_CAPACITY).await.unwrap();
        assert!(!d.allowed, "{d:?}");
        let d = l.check("k", 1).await.unwrap();
        assert!(!d.allowed);
        let retry = d.retry_after.unwrap();
        assert!(retry <= Duration::from_micros(1 << 45), "{retry:?}");
        // and a reward of as much brings it back
        l.reward("k", MAX_CAPACITY).await.unwrap();
        assert!(l.check("k", 1).await.unwrap().allowed);
    }
}

/// A block shorter than a microsecond was cut to 0 µs, which blocked nothing; a block is
/// now rounded up to whole microseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_microsecond_block_still_blocks() {
    let clock = ManualClock::new(T0);
    let l = memory_limiter(&clock, Limit::fixed_window(5, HOUR));
    let d = l.block("k", Duration::from_nanos(1)).await.unwrap();
    assert_eq!(d.retry_after, Some(Duration::from_micros(1)), "{d:?}");
    assert!(!l.check("k", 1).await.unwrap().allowed, "no time passed");
    clock.advance(Duration::from_micros(1));
    assert!(l.check("k", 1).await.unwrap().allowed);
    // block_for(500 ns) was a limit without a block
    let l = memory_limiter(
        &clock,
        Limit::fixed_window(1, HOUR).block_for(Duration::from_nanos(500)),
    );
    assert!(l.check("k", 1).await.unwrap().allowed);
    let d = l.check("k", 1).await.unwrap();
    assert_eq!(
        d.retry_after,
        Some(Duration::from_micros(1)),
        "blocked: {d:?}"
    );

    let redis = redkit_testkit::redis().await;
    let l = redis_limiter(&redis, Limit::fixed_window(5, HOUR));
    let d = l.block("k", Duration::from_nanos(1)).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(Duration::from_micros(1)), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_deadlines_and_clocks_do_not_panic() {
    let redis = redkit_testkit::redis().await;
    let l = RedisRateLimiter::builder(redis.clone())
        .prefix(redkit_testkit::prefix("rl-in"))
        .limit(Limit::fixed_window(5, HOUR))
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    assert!(l.check("k", 1).await.unwrap().allowed);
    assert!(matches!(
        RedisRateLimiter::builder(redis)
            .limit(Limit::fixed_window(5, HOUR))
            .deadline(Duration::ZERO)
            .build(),
        Err(Error::InvalidArgument(_))
    ));
    // a clock past what the arithmetic holds is an error, not an overflow
    let clock = ManualClock::new(Duration::MAX);
    let l: Arc<dyn RateLimiter> = Arc::new(memory_limiter(&clock, Limit::gcra(5, HOUR)));
    assert!(matches!(
        l.check("k", 1).await,
        Err(Error::InvalidArgument(_))
    ));
    // wait with an unbounded budget on an allowed key returns at once
    let clock = ManualClock::new(T0);
    let l = memory_limiter(&clock, Limit::fixed_window(5, HOUR));
    assert!(l.wait("k", 1, Duration::MAX).await.unwrap().allowed);
}
