//! `queue` and `queue-memory`, in the shape of `shared/peers/queue-bullmq.mjs` and
//! `queue-bullmq-mem.mjs`:
//! - `queue`: `N` jobs (default 50,000) with the payload `{"i":n,"pad":"x"×100}` enqueued
//!   in batches of 1000, awaited one after the other; then one worker with concurrency
//!   `C` (default 50) and a no-op handler drains them (completed jobs deleted). Reports
//!   enqueued and processed jobs per second.
//! - `queue-memory`: `used_memory` before and after 20,000 such jobs are enqueued, per
//!   job (run against a server nothing else uses).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, redis};
use redkit_queue::{Job, JobOptions, Queue, QueueConfig, QueueExt, RedisQueue, Worker};

use crate::Bench;

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    i: usize,
    pad: String,
}

fn payloads(n: usize) -> Vec<Payload> {
    (0..n)
        .map(|i| Payload {
            i,
            pad: "x".repeat(100),
        })
        .collect()
}

async fn connect(b: &Bench) -> Redis {
    Redis::from_config(RedisConfig::builder().url(&b.url).build().expect("config"))
        .await
        .expect("connect")
}

pub(crate) async fn run(b: &Bench) {
    let redis = connect(b).await;
    let queue = RedisQueue::new(
        &redis,
        &format!("bench-{}", std::process::id()),
        QueueConfig::new().prefix("bench"),
    )
    .expect("queue");
    let jobs = payloads(b.n);
    let start = Instant::now();
    for chunk in jobs.chunks(1000) {
        queue
            .enqueue_many(chunk, &JobOptions::new())
            .await
            .expect("enqueue");
    }
    let enqueue_s = start.elapsed().as_secs_f64();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let worker = {
        let done = done.clone();
        Worker::builder(Arc::new(queue.clone()))
            .concurrency(b.c)
            .batch(b.c)
            .build()
            .expect("worker")
            .run(move |_job: Job<Payload>| {
                let done = done.clone();
                async move {
                    done.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, String>(())
                }
            })
    };
    // done when every handler ran and every completion was recorded
    loop {
        if done.load(Ordering::Relaxed) >= b.n {
            let s = queue.stats().await.expect("stats");
            if s.waiting + s.active == 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let process_s = start.elapsed().as_secs_f64();
    let report = worker.shutdown(Duration::from_secs(5)).await;
    eprintln!("worker: {report:?}");
    let line = serde_json::json!({
        "peer": "redkit", "case": "queue", "N": b.n, "C": b.c,
        "enqueue_per_s": (b.n as f64 / enqueue_s).round() as u64,
        "process_per_s": (b.n as f64 / process_s).round() as u64,
    });
    println!("{line}");
}

async fn used_memory(redis: &Redis) -> i64 {
    let info: String = redis
        .query(redis::cmd("INFO").arg("memory"))
        .await
        .expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

pub(crate) async fn memory(b: &Bench) {
    let redis = connect(b).await;
    let queue = RedisQueue::new(
        &redis,
        &format!("bench-mem-{}", std::process::id()),
        QueueConfig::new().prefix("bench"),
    )
    .expect("queue");
    let jobs = payloads(b.n);
    let before = used_memory(&redis).await;
    for chunk in jobs.chunks(1000) {
        queue
            .enqueue_many(chunk, &JobOptions::new())
            .await
            .expect("enqueue");
    }
    let after = used_memory(&redis).await;
    let stats = queue.stats().await.expect("stats");
    assert_eq!(stats.waiting, b.n as u64);
    let line = serde_json::json!({
        "peer": "redkit", "case": "queue-memory", "N": b.n,
        "bytes_per_waiting_job": ((after - before) as f64 / b.n as f64).round() as i64,
    });
    println!("{line}");
    // leave nothing behind
    let name = queue.name().to_string();
    let pattern = format!("bench:queue:{{{name}}}:*");
    let keys: Vec<String> = redis
        .query(redis::cmd("KEYS").arg(&pattern))
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: i64 = redis.query(redis::cmd("DEL").arg(&keys)).await.unwrap_or(0);
    }
}
