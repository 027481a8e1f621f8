//! The handle under faults: server killed and restarted, paused, link cut or silent.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use redkit_core::{Event, Redis, RedisConfig, redis};
use redkit_testkit::{self as testkit, Proxy, Server};

async fn set_get(redis: &Redis, key: &str, value: &str) -> redkit_core::Result<String> {
    let _: () = redis.query(redis::cmd("SET").arg(key).arg(value)).await?;
    redis.query(redis::cmd("GET").arg(key)).await
}

/// Retries until an operation succeeds; returns how long that took.
async fn recovers_within(redis: &Redis, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        match set_get(redis, "probe", "v").await {
            Ok(v) => {
                assert_eq!(v, "v");
                return start.elapsed();
            }
            Err(e) => {
                assert!(e.is_retryable(), "outage errors are retryable: {e:?}");
                assert!(start.elapsed() < limit, "no recovery within {limit:?}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn the_same_handle_works_after_kill_and_restart() {
    let mut server = Server::builder().aof().start();
    let redis = server.redis().await;
    assert_eq!(set_get(&redis, "k", "before").await.unwrap(), "before");

    server.kill();
    let err = set_get(&redis, "k", "during").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    server.restart();
    let took = recovers_within(&redis, Duration::from_secs(10)).await;
    assert!(
        took < Duration::from_secs(5),
        "recovered only after {took:?}"
    );
    let v: String = redis.query(redis::cmd("GET").arg("k")).await.unwrap();
    assert_eq!(
        v, "before",
        "AOF with appendfsync always kept the acknowledged write"
    );

    // Dedicated connections recover too: the pool drops broken ones.
    let mut conn = redis.dedicated().await.unwrap();
    let pong: String = conn.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn subscriptions_report_the_gap_and_resubscribe_after_restart() {
    let mut server = Server::start();
    let config = server
        .config()
        .subscription_ping_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let mut sub = redis.subscribe("events").await.unwrap();
    redis.publish("events", b"one").await.unwrap();
    assert!(matches!(next(&mut sub).await, Event::Message(m) if m.payload == b"one"));

    server.restart();
    assert_eq!(next(&mut sub).await, Event::Disconnected);
    assert_eq!(next(&mut sub).await, Event::Resubscribed);

    // The server forgot every subscription; the handle subscribed again by itself.
    recovers_within(&redis, Duration::from_secs(10)).await;
    let receivers = redis.publish("events", b"two").await.unwrap();
    assert_eq!(receivers, 1);
    assert!(matches!(next(&mut sub).await, Event::Message(m) if m.payload == b"two"));
}

#[tokio::test]
async fn a_silent_link_is_reported_as_a_gap() {
    let server = testkit::Server::start();
    let proxy = Proxy::start(&server.addr()).await;
    let config = RedisConfig::builder()
        .url(proxy.url())
        .response_timeout(Duration::from_millis(300))
        .subscription_ping_interval(Duration::from_millis(100))
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    let mut sub = redis.subscribe("quiet").await.unwrap();
    redis.publish("quiet", b"a").await.unwrap();
    assert!(matches!(next(&mut sub).await, Event::Message(_)));

    // Bytes vanish, the TCP connection stays open: only the pings notice.
    proxy.drop_traffic(true);
    assert_eq!(next(&mut sub).await, Event::Disconnected);
    let err = set_get(&redis, "k", "v").await.unwrap_err();
    assert!(matches!(err, redkit_core::Error::Timeout(_)), "{err:?}");

    proxy.drop_traffic(false);
    proxy.cut();
    assert_eq!(next(&mut sub).await, Event::Resubscribed);
    recovers_within(&redis, Duration::from_secs(10)).await;
    redis.publish("quiet", b"b").await.unwrap();
    assert!(matches!(next(&mut sub).await, Event::Message(m) if m.payload == b"b"));
}

#[tokio::test]
async fn a_paused_server_times_out_then_recovers() {
    let server = Server::start();
    let config = server
        .config()
        .response_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let redis = Redis::from_config(config).await.unwrap();
    assert_eq!(set_get(&redis, "p", "1").await.unwrap(), "1");
    server.pause();
    let start = Instant::now();
    let err = set_get(&redis, "p", "2").await.unwrap_err();
    assert!(matches!(err, redkit_core::Error::Timeout(_)), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "timed out in bounded time"
    );
    server.resume();
    recovers_within(&redis, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn latency_through_the_proxy_is_survived() {
    let server = Server::start();
    let proxy = Proxy::start(&server.addr()).await;
    let redis = Redis::connect(&proxy.url()).await.unwrap();
    proxy.set_latency(Duration::from_millis(50));
    let start = Instant::now();
    assert_eq!(set_get(&redis, "slow", "x").await.unwrap(), "x");
    assert!(
        start.elapsed() >= Duration::from_millis(100),
        "latency was applied"
    );
}

async fn next(sub: &mut redkit_core::Subscription) -> Event {
    tokio::time::timeout(Duration::from_secs(10), sub.recv())
        .await
        .expect("no event within 10 s")
        .expect("subscription ended")
}
