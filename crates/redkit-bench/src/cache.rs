//! `cache`: reads with `C` concurrent callers (default 64) on one handle over 1000 keys
//! holding 100-byte values, each caller awaiting its call. Modes:
//! - `raw-get`: redis-rs `GET` on the handle's shared connection (the baseline);
//! - `get`: `RedisCache::get_bytes`, no L1 (one `GET` plus the entry header);
//! - `get-or-load`: `get_or_load` hits, no L1 (the loader never runs);
//! - `l1-get`: `get_bytes` with an L1 holding every key;
//! - `l1-hit-ns` / `l1-get-or-load-ns`: one task, nanoseconds per L1 hit;
//! - `raw-set`: redis-rs `SET` of the same 100-byte values (the write baseline);
//! - `set`: `set_bytes` (cache-aside: one script writes the entry and its message);
//! - `set-behind`: `set_bytes` with write-behind (entry + log record in one script) while
//!   the handle's flusher drains the log to a writer that does nothing.
//!
//! Rounds rotate the order; the median is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redkit_cache::{
    BoxError, Cache, CacheConfig, CacheExt, LoadOptions, RedisCache, SetOptions, Write,
    WriteBehind, Writer,
};
use redkit_core::{Redis, RedisConfig, redis};

use crate::{Bench, report, run_concurrent};

const KEYS: usize = 1000;

/// A writer that accepts everything at once (the bench measures the cache side).
struct Discard;

#[async_trait::async_trait]
impl Writer for Discard {
    async fn write(&self, _writes: &[Write]) -> Result<(), BoxError> {
        Ok(())
    }
}

struct Setup {
    redis: Redis,
    plain: RedisCache,
    local: RedisCache,
    behind: RedisCache,
    names: Arc<Vec<String>>,
    raw: Arc<Vec<String>>,
}

async fn measure(mode: &str, b: &Bench, s: &Setup) -> f64 {
    let names = s.names.clone();
    match mode {
        "raw-get" => {
            let (redis, raw) = (s.redis.clone(), s.raw.clone());
            run_concurrent(b.n, b.c, move |i| {
                let (redis, raw) = (redis.clone(), raw.clone());
                async move {
                    let v: Option<Vec<u8>> = redis
                        .query(redis::cmd("GET").arg(&raw[i % KEYS]))
                        .await
                        .unwrap();
                    assert!(v.is_some());
                }
            })
            .await
        }
        "raw-set" => {
            let (redis, raw) = (s.redis.clone(), s.raw.clone());
            let value = Arc::new("v".repeat(100));
            run_concurrent(b.n, b.c, move |i| {
                let (redis, raw, value) = (redis.clone(), raw.clone(), value.clone());
                async move {
                    let () = redis
                        .query(redis::cmd("SET").arg(&raw[i % KEYS]).arg(value.as_str()))
                        .await
                        .unwrap();
                }
            })
            .await
        }
        "set" | "set-behind" => {
            let cache = if mode == "set" {
                s.plain.clone()
            } else {
                s.behind.clone()
            };
            let value = Arc::new(serde_json::to_vec(&"v".repeat(98)).unwrap());
            let options = Arc::new(SetOptions::new());
            run_concurrent(b.n, b.c, move |i| {
                let (cache, names) = (cache.clone(), names.clone());
                let (value, options) = (value.clone(), options.clone());
                async move {
                    cache
                        .set_bytes(&names[i % KEYS], &value, &options)
                        .await
                        .unwrap();
                }
            })
            .await
        }
        "get" | "l1-get" => {
            let cache = if mode == "get" {
                s.plain.clone()
            } else {
                s.local.clone()
            };
            run_concurrent(b.n, b.c, move |i| {
                let (cache, names) = (cache.clone(), names.clone());
                async move {
                    assert!(cache.get_bytes(&names[i % KEYS]).await.unwrap().is_some());
                }
            })
            .await
        }
        _ => {
            let cache = s.plain.clone();
            run_concurrent(b.n, b.c, move |i| {
                let (cache, names) = (cache.clone(), names.clone());
                async move {
                    let v: Option<String> = cache
                        .get_or_load(&names[i % KEYS], &LoadOptions::new(), || async {
                            Err::<Option<String>, _>(std::io::Error::other("never loads"))
                        })
                        .await
                        .unwrap();
                    assert!(v.is_some());
                }
            })
            .await
        }
    }
}

/// Nanoseconds per L1 hit, one task, `n` calls.
async fn l1_latency(s: &Setup, n: usize, load: bool) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        let key = &s.names[i % KEYS];
        if load {
            let v: Option<String> = s
                .local
                .get_or_load(key, &LoadOptions::new(), || async {
                    Err::<Option<String>, _>(std::io::Error::other("never loads"))
                })
                .await
                .unwrap();
            assert!(v.is_some());
        } else {
            assert!(s.local.get_bytes(key).await.unwrap().is_some());
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

pub(crate) async fn run(b: &Bench) {
    let rounds = crate::env_usize("ROUNDS").unwrap_or(5).max(1);
    let redis = Redis::from_config(RedisConfig::builder().url(&b.url).build().expect("config"))
        .await
        .expect("connect");
    let config = CacheConfig::new()
        .prefix(format!("bench-cache-{}", std::process::id()))
        .ttl(Duration::from_secs(600))
        .early_refresh(0.0);
    let plain = RedisCache::new(&redis, config.clone())
        .await
        .expect("cache");
    let local = RedisCache::new(
        &redis,
        config.clone().local(10_000, Duration::from_secs(60)),
    )
    .await
    .expect("cache");
    let behind = RedisCache::new(
        &redis,
        config
            .namespace("behind")
            .write_behind(Arc::new(Discard), WriteBehind::new()),
    )
    .await
    .expect("cache");
    let value = "v".repeat(98); // 100 bytes as JSON
    let names: Vec<String> = (0..KEYS).map(|i| format!("item:{i}")).collect();
    for chunk in names.chunks(100) {
        let items: Vec<(&str, Vec<u8>)> = chunk
            .iter()
            .map(|k| (k.as_str(), serde_json::to_vec(&value).unwrap()))
            .collect();
        let refs: Vec<(&str, &[u8])> = items.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        plain
            .set_many_bytes(&refs, &SetOptions::new())
            .await
            .unwrap();
    }
    let mut raw = Vec::with_capacity(KEYS);
    for k in &names {
        let key = format!("bench-cache-raw-{}:{k}", std::process::id());
        let _: () = redis
            .query(redis::cmd("SET").arg(&key).arg(&value))
            .await
            .unwrap();
        raw.push(key);
    }
    let setup = Setup {
        redis: redis.clone(),
        plain,
        local,
        behind,
        names: Arc::new(names),
        raw: Arc::new(raw),
    };
    // fill the L1
    for k in setup.names.iter() {
        setup.local.get_bytes(k).await.unwrap();
    }
    let group = [
        "raw-get",
        "get",
        "get-or-load",
        "l1-get",
        "raw-set",
        "set",
        "set-behind",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); group.len()];
    for round in 0..rounds {
        for k in 0..group.len() {
            let idx = (round + k) % group.len();
            results[idx].push(measure(group[idx], b, &setup).await);
        }
    }
    for (mode, mut r) in group.iter().zip(results) {
        r.sort_by(f64::total_cmp);
        let peer = if mode.starts_with("raw") {
            "redis-rs"
        } else {
            "redkit"
        };
        report(peer, "cache", mode, b.n, b.c, "ops_per_s", r[r.len() / 2]);
    }
    for (mode, load) in [("l1-hit-ns", false), ("l1-get-or-load-ns", true)] {
        let mut r: Vec<f64> = Vec::new();
        for _ in 0..rounds {
            r.push(l1_latency(&setup, b.n, load).await);
        }
        r.sort_by(f64::total_cmp);
        report("redkit", "cache", mode, b.n, 1, "ns_per_op", r[r.len() / 2]);
    }
    let m = setup.local.metrics();
    eprintln!("l1 cache metrics: {m:?}");
    let drained = setup.behind.shutdown(Duration::from_secs(60)).await;
    eprintln!(
        "write-behind: {drained:?}, metrics {:?}",
        setup.behind.metrics()
    );
    let _ = setup.behind.clear().await;
    let _ = setup.plain.clear().await;
}
