//! `ratelimit`: decisions per second in the shape of the peer script
//! (rate-limiter-flexible): `C` concurrent callers on one handle, `N` single `check()`
//! calls over 1000 keys, limits never reached (1e9 per minute), each caller awaiting its
//! call. Modes: fixed window and GCRA through `RedisRateLimiter`, the same without
//! batching, and a bare redis-rs baseline of one EVALSHA per decision (a lean fixed
//! window script). Rounds rotate the order; the median is reported.

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{Redis, RedisConfig, redis};
use redkit_ratelimit::{Limit, RateLimiter, RedisRateLimiter};

use crate::{Bench, report, run_concurrent};

const KEYS: usize = 1000;

/// One decision per call: INCRBY, PEXPIRE on the first hit, PTTL for the reset.
const BARE: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
    if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end \
    return {n, redis.call('PTTL', KEYS[1])}";

async fn limiter(b: &Bench, redis: &Redis, limit: Limit, batching: bool) -> f64 {
    let prefix = format!("bench-rl-{}", std::process::id());
    let l: Arc<dyn RateLimiter> = Arc::new(
        RedisRateLimiter::builder(redis.clone())
            .prefix(prefix)
            .limit(limit)
            .batching(batching)
            .build()
            .expect("limiter"),
    );
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("user{i}")).collect());
    run_concurrent(b.n, b.c, move |i| {
        let l = Arc::clone(&l);
        let keys = Arc::clone(&keys);
        async move {
            let d = l.check(&keys[i % KEYS], 1).await.unwrap();
            assert!(d.allowed);
        }
    })
    .await
}

async fn bare(b: &Bench, conn: redis::aio::MultiplexedConnection) -> f64 {
    let script = redis::Script::new(BARE);
    let keys: Arc<Vec<String>> = Arc::new(
        (0..KEYS)
            .map(|i| format!("bench-rl-bare-{}:user{i}", std::process::id()))
            .collect(),
    );
    run_concurrent(b.n, b.c, move |i| {
        let mut conn = conn.clone();
        let script = script.clone();
        let keys = Arc::clone(&keys);
        async move {
            let (n, _pttl): (i64, i64) = script
                .key(&keys[i % KEYS])
                .arg(1)
                .arg(60_000)
                .invoke_async(&mut conn)
                .await
                .unwrap();
            assert!(n <= 1_000_000_000);
        }
    })
    .await
}

pub(crate) async fn run(b: &Bench) {
    let rounds = crate::env_usize("ROUNDS").unwrap_or(3).max(1);
    let nodelay = std::env::var("RL_NODELAY").map_or(true, |v| v != "0");
    let config = RedisConfig::builder()
        .url(&b.url)
        .tcp_nodelay(nodelay)
        .build()
        .expect("config");
    let redis = Redis::from_config(config).await.expect("connect");
    let client = redis::Client::open(b.url.as_str()).expect("url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let minute = Duration::from_secs(60);
    let fixed = Limit::fixed_window(1_000_000_000, minute);
    let gcra = Limit::gcra(1_000_000, Duration::from_secs(1)).burst(1_000_000_000);
    let labels = [
        ("redkit", "fixed-window"),
        ("redkit", "gcra"),
        ("redkit", "fixed-window-unbatched"),
        ("redis-rs", "evalsha-per-decision"),
    ];
    // RL_MODES=0,3 runs only those modes (indices into `labels`).
    let only: Option<Vec<usize>> = std::env::var("RL_MODES")
        .ok()
        .map(|v| v.split(',').filter_map(|m| m.trim().parse().ok()).collect());
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    for round in 0..rounds {
        for k in 0..labels.len() {
            let path = (round + k) % labels.len();
            if only.as_ref().is_some_and(|o| !o.contains(&path)) {
                continue;
            }
            let per_s = match path {
                0 => limiter(b, &redis, fixed.clone(), true).await,
                1 => limiter(b, &redis, gcra.clone(), true).await,
                2 => limiter(b, &redis, fixed.clone(), false).await,
                _ => bare(b, conn.clone()).await,
            };
            results[path].push(per_s);
        }
    }
    let mut suffix = if nodelay { "" } else { "-nodelay-off" }.to_string();
    if std::env::var("RUNTIME").as_deref() == Ok("current") {
        suffix.push_str("-current-thread");
    }
    for ((peer, mode), mut values) in labels.into_iter().zip(results) {
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        let mode = format!("{mode}{suffix}");
        report(
            peer,
            "ratelimit",
            &mode,
            b.n,
            b.c,
            "decisions_per_s",
            median,
        );
    }
}
