//! What a limiter answers when Redis goes away, and keys that hold foreign data.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use redkit_core::Redis;
use redkit_ratelimit::{
    Error, Limit, MemoryRateLimiter, OnError, RateLimiter, RedisRateLimiter, Request,
};
use redkit_testkit::Server;

const HOUR: Duration = Duration::from_secs(3600);

async fn handle(server: &Server) -> Redis {
    Redis::from_config(
        server
            .config()
            .response_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
            .reconnect_retries(1)
            .build()
            .unwrap(),
    )
    .await
    .unwrap()
}

fn limiter(redis: &Redis, on_error: OnError) -> RedisRateLimiter {
    RedisRateLimiter::builder(redis.clone())
        .prefix(redkit_testkit::prefix("rl-fault"))
        .limit(Limit::fixed_window(3, HOUR))
        .deadline(Duration::from_millis(500))
        .on_error(on_error)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_policy_answers_as_chosen_while_redis_is_down() {
    let mut server = Server::start();
    let redis = handle(&server).await;
    let insurance = Arc::new(
        MemoryRateLimiter::builder()
            .limit(Limit::fixed_window(2, HOUR))
            .build()
            .unwrap(),
    );
    let closed = limiter(&redis, OnError::FailClosed);
    let open = limiter(&redis, OnError::FailOpen);
    let insured = limiter(&redis, OnError::Insurance(insurance.clone()));
    for l in [&closed, &open, &insured] {
        let d = l.check("user", 1).await.unwrap();
        assert!(d.allowed && !d.degraded);
    }

    server.kill();
    let started = Instant::now();
    let err = closed.check("user", 1).await.unwrap_err();
    assert!(err.is_store_failure(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    let d = open.check("user", 1).await.unwrap();
    assert!(d.allowed && d.degraded, "{d:?}");

    // the insurance limiter holds this process's share: 2 per hour
    let mut admitted = 0;
    for _ in 0..5 {
        let d = insured.check("user", 1).await.unwrap();
        assert!(d.degraded);
        admitted += u32::from(d.allowed);
    }
    assert_eq!(admitted, 2);

    // bad input is never covered by a policy
    assert!(matches!(
        open.check("bad{key}", 1).await,
        Err(Error::InvalidKey(_))
    ));

    server.restart();
    assert!(
        redkit_testkit::eventually(Duration::from_secs(10), || async {
            matches!(insured.check("user", 1).await, Ok(d) if !d.degraded)
        })
        .await,
        "the limiter did not go back to Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_misses_the_deadline() {
    let server = Server::start();
    let redis = Redis::from_config(server.config().build().unwrap())
        .await
        .unwrap();
    let closed = limiter(&redis, OnError::FailClosed);
    let open = limiter(&redis, OnError::FailOpen);
    closed.check("user", 1).await.unwrap();
    server.pause();
    let started = Instant::now();
    let err = closed.check("user", 1).await.unwrap_err();
    assert!(matches!(err, Error::Deadline(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(open.check("user", 1).await.unwrap().degraded);
    server.resume();
    assert!(!closed.check("user", 1).await.unwrap().degraded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_holding_foreign_data_fails_alone() {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-foreign");
    for limit in [
        Limit::fixed_window(5, HOUR),
        Limit::sliding_window(5, HOUR),
        Limit::sliding_log(5, HOUR),
        Limit::gcra(5, HOUR),
    ] {
        let l = RedisRateLimiter::builder(redis.clone())
            .prefix(&prefix)
            .limit(limit.clone())
            .build()
            .unwrap();
        let foreign = l.state_keys("spoiled").unwrap().remove(0);
        let _: () = redis
            .query(redis::cmd("RPUSH").arg(&foreign).arg("x"))
            .await
            .unwrap();
        // concurrent single calls share one script call: the foreign key fails alone
        let (spoiled, fine) = tokio::join!(l.check("spoiled", 1), l.check("fine", 1));
        assert!(spoiled.unwrap_err().is_store_failure(), "{limit:?}");
        assert_eq!(fine.unwrap().remaining, 4, "{limit:?}");
        // an explicit batch fails as a call and writes nothing: its caller gets an error,
        // so none of its requests may have consumed (issue 18 item 7; they were decided
        // and consumed before)
        let err = l
            .check_many(&[("fine", 1), ("spoiled", 1), ("fine", 1)])
            .await
            .unwrap_err();
        assert!(err.is_store_failure(), "{limit:?} {err:?}");
        let d = l.check("fine", 1).await.unwrap();
        assert_eq!(
            d.remaining, 3,
            "{limit:?}: the failed batch consumed: {d:?}"
        );
        // a spoiled key listed after a penalty and a block: nothing of them either
        let err = l
            .run(&[
                Request::penalty("fine", 2),
                Request::block("fine", HOUR),
                Request::check("spoiled", 1),
            ])
            .await
            .unwrap_err();
        assert!(err.is_store_failure(), "{limit:?} {err:?}");
        let d = l.peek("fine").await.unwrap();
        assert!(d.allowed && d.remaining == 3, "{limit:?}: {d:?}");
        // nothing of the foreign value was touched
        let len: i64 = redis.query(redis::cmd("LLEN").arg(&foreign)).await.unwrap();
        assert_eq!(len, 1);
    }
}

use redkit_core::redis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_left_from_an_earlier_window_counts_as_empty() {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-stale");
    let l = RedisRateLimiter::builder(redis.clone())
        .prefix(&prefix)
        .aligned_windows(true)
        .limit(Limit::fixed_window(5, HOUR))
        .build()
        .unwrap();
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let idx = now_us / HOUR.as_micros() as u64;
    let value = |window: u64| (window % 2048) * (1u64 << 41) + 5;
    let key = |name: &str| l.state_keys(name).unwrap().remove(0);
    for (name, window, counted) in [("old", idx - 1, false), ("now", idx, true)] {
        let _: () = redis
            .query(
                redis::cmd("SET")
                    .arg(key(name))
                    .arg(value(window))
                    .arg("EX")
                    .arg(3600),
            )
            .await
            .unwrap();
        // the general path (peek) and the hot path (check) read it alike
        let peek = l.peek(name).await.unwrap();
        assert_eq!(peek.remaining, if counted { 0 } else { 5 }, "{name}");
        let d = l.check(name, 1).await.unwrap();
        assert_eq!(d.allowed, !counted, "{name}: {d:?}");
        assert_eq!(d.remaining, if counted { 0 } else { 4 }, "{name}: {d:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_key_lives_as_long_as_its_state() {
    let redis = redkit_testkit::redis().await;
    let prefix = redkit_testkit::prefix("rl-ttl");
    // one unit per 50 ms, burst 2: the TAT crosses a 100 ms bucket every other check
    let limit = Limit::gcra(20, Duration::from_secs(1)).burst(2);
    let l = RedisRateLimiter::builder(redis.clone())
        .prefix(&prefix)
        .limit(limit)
        .build()
        .unwrap();
    let key = l.state_keys("steady").unwrap().remove(0);
    let mut allowed = 0;
    for _ in 0..40 {
        let d = l.check("steady", 1).await.unwrap();
        allowed += u32::from(d.allowed);
        let pttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
        assert!(
            pttl >= 0 && Duration::from_millis(pttl as u64 + 1) >= d.reset_after,
            "ttl {pttl} ms < state {:?}",
            d.reset_after
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // steady consumption at about the rate, never resting long enough to refill fully
    assert!(allowed >= 30, "{allowed}");
    // a full burst (a bucket's worth) after each refill: the new TAT lands one or two
    // buckets after the stored one, whose key is still alive when it is two
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let d = l.check("steady", 2).await.unwrap();
        assert!(d.allowed, "{d:?}");
        let pttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
        assert!(
            pttl >= 0 && Duration::from_millis(pttl as u64 + 1) >= d.reset_after,
            "ttl {pttl} ms < state {:?} after a refill",
            d.reset_after
        );
    }
}
