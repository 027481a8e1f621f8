//! `pubsub`: fan-out. `SUBS` subscribers (default 16) in one process listen on one channel;
//! `N` messages (default 20,000, ~100-byte JSON) are published with 64 in flight; the
//! metric is deliveries per second (subscribers × messages / time until every subscriber
//! has every message).
//! - `raw`: the usual redis-rs shape, one `aio::PubSub` connection per subscriber, so the
//!   server writes every message once per subscriber;
//! - `redkit`: `RedisPubSub` subscriptions on one handle, which share its subscription
//!   connection: the server writes each message once and redkit fans out in process.
//!
//! Both publish through the same bare redis-rs multiplexed connection. Rounds rotate the
//! order; the median is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redkit_core::{Redis, RedisConfig, redis};
use redkit_pubsub::{Event, Options, PubSubExt, RedisPubSub, Topic};

use crate::{Bench, env_usize, report};

fn payload(i: usize) -> String {
    serde_json::json!({"sku": format!("item-{i}"), "cents": i, "note": "x".repeat(40)}).to_string()
}

async fn publish_all(url: &str, channel: &str, n: usize) {
    let client = redis::Client::open(url).expect("client");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("publisher");
    let channel = Arc::new(channel.to_string());
    crate::run_concurrent(n, 64, move |i| {
        let mut conn = conn.clone();
        let channel = channel.clone();
        async move {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(channel.as_str())
                .arg(payload(i))
                .query_async(&mut conn)
                .await
                .expect("PUBLISH");
        }
    })
    .await;
}

async fn wait(got: &AtomicU64, want: u64, started: Instant) -> f64 {
    while got.load(Ordering::Relaxed) < want {
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "deliveries stalled"
        );
    }
    want as f64 / started.elapsed().as_secs_f64()
}

async fn raw(b: &Bench, subs: usize, channel: &str) -> f64 {
    let client = redis::Client::open(b.url.as_str()).expect("client");
    let got = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let mut ps = client.get_async_pubsub().await.expect("pubsub");
        ps.subscribe(channel).await.expect("subscribe");
        let got = got.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = ps.into_on_message();
            while let Some(msg) = stream.next().await {
                let bytes: Vec<u8> = msg.get_payload().expect("payload");
                let _: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
                got.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    publish_all(&b.url, channel, b.n).await;
    let rate = wait(&got, (subs * b.n) as u64, started).await;
    for t in tasks {
        t.abort();
    }
    rate
}

async fn redkit(b: &Bench, subs: usize, channel: &str) -> f64 {
    let config = RedisConfig::builder().url(&b.url).build().expect("config");
    let redis = Redis::from_config(config).await.expect("connect");
    let bus = RedisPubSub::new(&redis);
    let topic = Topic::Channel(channel.to_string());
    let got = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..subs {
        let mut sub = bus
            .subscribe_with::<serde_json::Value>(&topic, Options::new().buffer(b.n))
            .await
            .expect("subscribe");
        let got = got.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = sub.recv().await {
                match e {
                    Event::Message(_) => {
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::Lagged { missed } => panic!("lagged by {missed}"),
                    _ => {}
                }
            }
        }));
    }
    let started = Instant::now();
    publish_all(&b.url, channel, b.n).await;
    let rate = wait(&got, (subs * b.n) as u64, started).await;
    for t in tasks {
        t.abort();
    }
    rate
}

pub(crate) async fn run(b: &Bench) {
    let rounds = env_usize("ROUNDS").unwrap_or(5).max(1);
    let subs = env_usize("SUBS").unwrap_or(16);
    let mut results: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            let which = (round + k) % 2;
            let channel = format!("bench-fanout-{round}-{which}-{}", std::process::id());
            let rate = if which == 0 {
                raw(b, subs, &channel).await
            } else {
                redkit(b, subs, &channel).await
            };
            results[which].push(rate);
        }
    }
    for (which, mut r) in results.into_iter().enumerate() {
        r.sort_by(f64::total_cmp);
        let (peer, mode) = if which == 0 {
            ("redis-rs", "connection-per-subscriber")
        } else {
            ("redkit", "shared-subscription-connection")
        };
        report(
            peer,
            "pubsub",
            mode,
            b.n,
            subs,
            "deliveries_per_s",
            r[r.len() / 2],
        );
    }
}
