//! `redkit-bench <case>...`: runs benchmark cases against `REDIS_URL` (or
//! `redis://127.0.0.1:$PORT`) and prints one JSON line per measurement, in the shape of the
//! peer scripts in `shared/peers` (`peer`, `case`, `N`, `C`, then the metric).
//!
//! Cases: `cache` — reads next to raw GET and L1 hit latency (see `cache.rs`); `queue` / `queue-memory` — enqueue and end-to-end jobs per second, and Redis bytes per waiting job, in the shape of the BullMQ peer scripts (see `queue.rs`); `ratelimit` — single `check()` calls over 1000 keys (see `ratelimit.rs`); `leaderboard` — rank, around-me and top-100 latency on a 1,000,000-member board next to raw commands (see `leaderboard.rs`); `geo` — radius searches on 1,000,000 places next to raw GEOSEARCH (see `geo.rs`); `session` — load and save next to raw GET/GETEX/SETEX (see `session.rs`); `streams` — consumer throughput next to a raw XREADGROUP+XACK loop (see `streams.rs`); `pubsub` — fan-out deliveries per second next to one redis-rs pub/sub connection per subscriber (see `pubsub.rs`); `lock-handoff` — contended hand-offs, notified vs polling; `lock` — uncontended acquire + release pairs (see `lock.rs`); `raw` — SET or GET (one command per operation) through the shared multiplexed connection, through a pool
//! checkout per operation, and through a bare redis-rs multiplexed connection (the
//! baseline for redkit's own overhead). `N` and `C` override the operation count and
//! the number of concurrent tasks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

mod cache;
mod geo;
mod leaderboard;
mod lock;
mod pubsub;
mod queue;
mod ratelimit;
mod raw;
mod session;
mod streams;

/// Every case this binary runs (`redkit-bench --list`).
const CASES: &[&str] = &[
    "raw",
    "lock",
    "lock-handoff",
    "ratelimit",
    "leaderboard",
    "geo",
    "session",
    "streams",
    "pubsub",
    "cache",
    "queue",
    "queue-memory",
];

/// Settings shared by every case.
#[derive(Debug, Clone)]
struct Bench {
    url: String,
    n: usize,
    c: usize,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Prints one JSON result line.
fn report(peer: &str, case: &str, mode: &str, n: usize, c: usize, metric: &str, per_s: f64) {
    let line = serde_json::json!({
        "peer": peer, "case": case, "mode": mode, "N": n, "C": c, metric: per_s.round() as u64,
    });
    println!("{line}");
}

/// Latency samples of one path over several rounds: each round's mean, and every call.
#[derive(Debug, Default)]
struct Rounds {
    means: Vec<f64>,
    all: Vec<std::time::Duration>,
}

impl Rounds {
    fn push(&mut self, latencies: Vec<std::time::Duration>) {
        let us = |d: &std::time::Duration| d.as_secs_f64() * 1e6;
        self.means
            .push(latencies.iter().map(us).sum::<f64>() / latencies.len().max(1) as f64);
        self.all.extend(latencies);
    }

    /// Prints one line per path (the first is the baseline of `vs_raw`): the median
    /// round's mean, p50 and p99 over all calls, in µs, plus `extra` fields.
    fn report(case: &str, mode: &str, n: usize, paths: Vec<(&str, Rounds, serde_json::Value)>) {
        let mut base = None;
        for (who, mut r, extra) in paths {
            r.means.sort_by(f64::total_cmp);
            r.all.sort();
            let median = r.means.get(r.means.len() / 2).copied().unwrap_or(0.0);
            let p = |q: f64| {
                let i = ((r.all.len().max(1) - 1) as f64 * q) as usize;
                r.all.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
            };
            let base = *base.get_or_insert(median);
            let round1 = |x: f64| (x * 10.0).round() / 10.0;
            let mut line = serde_json::json!({
                "peer": who, "case": case, "mode": mode, "N": n, "C": 1,
                "mean_us": round1(median), "p50_us": round1(p(0.5)), "p99_us": round1(p(0.99)),
                "vs_raw": (median / base * 1000.0).round() / 1000.0,
            });
            if let (Some(line), serde_json::Value::Object(extra)) = (line.as_object_mut(), extra) {
                line.extend(extra);
            }
            println!("{line}");
        }
    }
}

/// Runs `f` on `c` tasks until `n` operations are done; returns operations per second.
async fn run_concurrent<F, Fut>(n: usize, c: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let f = std::sync::Arc::new(f);
    let start = Instant::now();
    let tasks: Vec<_> = (0..c)
        .map(|_| {
            let next = next.clone();
            let f = f.clone();
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("benchmark task panicked");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // RUNTIME=current runs everything on one thread (the default is tokio's multi-thread
    // runtime with a worker per core).
    let runtime = match std::env::var("RUNTIME").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    runtime.expect("tokio runtime").block_on(cases());
}

async fn cases() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| {
        let port = std::env::var("PORT").unwrap_or_else(|_| "6379".into());
        format!("redis://127.0.0.1:{port}")
    });
    let cases: Vec<String> = std::env::args().skip(1).collect();
    if cases.iter().any(|c| c == "--list") {
        println!("{}", CASES.join("\n"));
        return;
    }
    let cases = if cases.is_empty() {
        vec!["raw".to_string()]
    } else {
        cases
    };
    for case in cases {
        match case.as_str() {
            "raw" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(200_000),
                    c: env_usize("C").unwrap_or(64),
                };
                raw::run(&bench).await;
            }
            "lock" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(50_000),
                    c: env_usize("C").unwrap_or(64),
                };
                lock::run(&bench).await;
            }
            "ratelimit" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(200_000),
                    c: env_usize("C").unwrap_or(64),
                };
                ratelimit::run(&bench).await;
            }
            "lock-handoff" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(2_000),
                    c: env_usize("C").unwrap_or(8),
                };
                lock::handoff(&bench).await;
            }
            "leaderboard" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(5_000),
                    c: 1,
                };
                leaderboard::run(&bench).await;
            }
            "geo" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(2_000),
                    c: 1,
                };
                geo::run(&bench).await;
            }
            "session" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(200_000),
                    c: env_usize("C").unwrap_or(64),
                };
                session::run(&bench).await;
            }
            "streams" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(100_000),
                    c: 64,
                };
                streams::run(&bench).await;
            }
            "pubsub" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(20_000),
                    c: 64,
                };
                pubsub::run(&bench).await;
            }
            "queue" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(50_000),
                    c: env_usize("C").unwrap_or(50),
                };
                queue::run(&bench).await;
            }
            "queue-memory" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(20_000),
                    c: 1,
                };
                queue::memory(&bench).await;
            }
            "cache" => {
                let bench = Bench {
                    url: url.clone(),
                    n: env_usize("N").unwrap_or(200_000),
                    c: env_usize("C").unwrap_or(64),
                };
                cache::run(&bench).await;
            }
            other => {
                eprintln!("unknown case {other:?}; known: {}", CASES.join(", "));
                std::process::exit(2);
            }
        }
    }
}
