//! `streams`: entries consumed per second. `N` entries (default 100,000) with a small JSON
//! payload are appended, then drained by one group:
//! - `raw`: a bare redis-rs loop of `XREADGROUP COUNT 100` followed by one `XACK` of the
//!   whole batch (the lower bound of what a consumer must send);
//! - `consumer`: redkit's `Consumer` (batch 100, concurrency 64, JSON decoding, a no-op
//!   handler, acks after each handler).
//!
//! Rounds rotate the order; the median is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, redis};
use redkit_streams::{Consumer, Message, Producer, RedisStreamStore, StreamStore};

use crate::{Bench, report};

#[derive(serde::Serialize, serde::Deserialize)]
struct Job {
    id: u64,
    kind: String,
}

async fn fill(store: &Arc<RedisStreamStore>, stream: &str, n: usize) {
    let producer = Producer::<Job>::new(store.clone(), stream);
    for start in (0..n).step_by(1000) {
        let jobs: Vec<Job> = (start..(start + 1000).min(n))
            .map(|i| Job {
                id: i as u64,
                kind: "resize-image".into(),
            })
            .collect();
        producer.send_batch(&jobs).await.expect("append");
    }
}

async fn raw(redis: &Redis, key: &str, n: usize) -> f64 {
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let reply: redis::Value = redis
            .query(
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("raw")
                    .arg("COUNT")
                    .arg(100)
                    .arg("STREAMS")
                    .arg(key)
                    .arg(">"),
            )
            .await
            .expect("XREADGROUP");
        let reply: redis::streams::StreamReadReply =
            redis::FromRedisValue::from_redis_value(reply).expect("reply");
        let mut ack = redis::cmd("XACK");
        ack.arg(key).arg("g");
        let mut got = 0;
        for k in &reply.keys {
            for id in &k.ids {
                let payload: String = id.get("p").expect("payload");
                let _: serde_json::Value = serde_json::from_str(&payload).expect("json");
                ack.arg(&id.id);
                got += 1;
            }
        }
        if got > 0 {
            let _: i64 = redis.query(&ack).await.expect("XACK");
        }
        done += got;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn consumer(store: &Arc<RedisStreamStore>, stream: &str, n: usize) -> f64 {
    let handled = Arc::new(AtomicU64::new(0));
    let count = handled.clone();
    let started = Instant::now();
    let handle = Consumer::builder(store.clone(), stream, "g")
        .batch(100)
        .concurrency(64)
        .block(Duration::from_millis(50))
        .build()
        .expect("consumer")
        .run(move |_m: Message<Job>| {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                Ok::<(), String>(())
            }
        });
    let key_done = || handled.load(Ordering::Relaxed) as usize >= n;
    while !key_done() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let report = handle.shutdown(Duration::from_secs(5)).await;
    assert_eq!(report.processed as usize, n, "{report:?}");
    rate
}

pub(crate) async fn run(b: &Bench) {
    let rounds = crate::env_usize("ROUNDS").unwrap_or(5).max(1);
    let config = RedisConfig::builder().url(&b.url).build().expect("config");
    let redis = Redis::from_config(config).await.expect("connect");
    let store = Arc::new(RedisStreamStore::new(&redis, "bench").expect("store"));
    let mut results: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            let which = (round + k) % 2;
            let stream = format!("s{round}-{which}-{}", std::process::id());
            store
                .create_group(&stream, "g", redkit_streams::StartFrom::Beginning)
                .await
                .expect("group");
            fill(&store, &stream, b.n).await;
            let rate = if which == 0 {
                raw(&redis, &store.key(&stream).expect("key"), b.n).await
            } else {
                consumer(&store, &stream, b.n).await
            };
            let _: i64 = redis
                .query(redis::cmd("DEL").arg(store.key(&stream).expect("key")))
                .await
                .expect("DEL");
            results[which].push(rate);
        }
    }
    for (which, mut r) in results.into_iter().enumerate() {
        r.sort_by(f64::total_cmp);
        let (peer, mode) = if which == 0 {
            ("redis-rs", "xreadgroup-xack-loop")
        } else {
            ("redkit", "consumer")
        };
        report(
            peer,
            "streams",
            mode,
            b.n,
            b.c,
            "entries_per_s",
            r[r.len() / 2],
        );
    }
}
