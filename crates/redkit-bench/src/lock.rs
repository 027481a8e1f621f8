//! `lock`: uncontended acquire + release pairs per second, the shape of the peer script
//! (node-redlock): `C` concurrent callers, each pair on a fresh resource, TTL 10 s,
//! fencing tokens on. The baseline is a bare redis-rs loop: `SET NX PX`, then an
//! owner-checked delete script.

use std::sync::Arc;
use std::time::Duration;

use redkit_core::{Redis, RedisConfig, redis};
use redkit_lock::{Lock, RedisLock};

use crate::{Bench, report, run_concurrent};

const UNLOCK: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

pub(crate) async fn run(b: &Bench) {
    let nodelay = std::env::var("LOCK_NODELAY").map_or(true, |v| v != "0");
    let config = RedisConfig::builder()
        .url(&b.url)
        .tcp_nodelay(nodelay)
        .build()
        .expect("config");
    let handle = Redis::from_config(config).await.expect("connect");
    let run_id = std::process::id();

    let batching = std::env::var("LOCK_BATCHING").map_or(true, |v| v != "0");
    let locks = Arc::new(
        RedisLock::builder(handle.clone())
            .prefix(format!("bench-lock-{run_id}"))
            .batching(batching)
            .build()
            .expect("lock"),
    );
    let pairs = run_concurrent(b.n, b.c, move |i| {
        let locks = Arc::clone(&locks);
        async move {
            let g = locks
                .try_acquire(&format!("res{i}"), Duration::from_secs(10))
                .await
                .unwrap()
                .expect("fresh resource is free");
            assert!(g.release().await.unwrap());
        }
    })
    .await;
    let mode = match (batching, nodelay) {
        (true, true) => "fencing",
        (true, false) => "fencing-nodelay-off",
        (false, true) => "fencing-unbatched",
        (false, false) => "fencing-unbatched-nodelay-off",
    };
    let mode = if std::env::var("RUNTIME").as_deref() == Ok("current") {
        format!("{mode}-current-thread")
    } else {
        mode.to_string()
    };
    report(
        "redkit",
        "lock",
        &mode,
        b.n,
        b.c,
        "acquire_release_per_s",
        pairs,
    );

    if std::env::var("LOCK_SKIP_BARE").is_ok() {
        return;
    }
    let client = redis::Client::open(b.url.as_str()).expect("url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let unlock = redis::Script::new(UNLOCK);
    let pairs = run_concurrent(b.n, b.c, move |i| {
        let mut conn = conn.clone();
        let unlock = unlock.clone();
        async move {
            let key = format!("bench-bare-{run_id}:res{i}");
            let token = format!("{run_id}-{i}");
            let ok: bool = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(10_000)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ok);
            let n: i64 = unlock
                .key(&key)
                .arg(&token)
                .invoke_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
    })
    .await;
    report(
        "redis-rs",
        "lock",
        "bare-set-nx",
        b.n,
        b.c,
        "acquire_release_per_s",
        pairs,
    );

    // The fencing counters are the only keys left behind; remove them.
    let mut conn = handle.conn();
    let pattern = format!("bench-lock-{run_id}:*");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    for chunk in keys.chunks(500) {
        let _: i64 = redis::cmd("UNLINK")
            .arg(chunk)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// `lock-handoff`: `C` tasks contend for one resource. A holder keeps it 1 ms, releases
/// it, and waits 10 ms before asking again, so the next holder is one of the waiters.
/// Reports the mean and worst time from a release to the next acquisition, with release
/// notifications and with waiters polling on the timed fallback alone.
pub(crate) async fn handoff(b: &Bench) {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let handle = Redis::from_config(RedisConfig::builder().url(&b.url).build().expect("config"))
        .await
        .expect("connect");
    for notify in [true, false] {
        let n = if notify { b.n } else { (b.n / 10).max(b.c) };
        let locks = Arc::new(
            RedisLock::builder(handle.clone())
                .prefix(format!("bench-handoff-{}", std::process::id()))
                .notifications(notify)
                .build()
                .expect("lock"),
        );
        let origin = std::time::Instant::now();
        let released_at = Arc::new(AtomicU64::new(0));
        let gaps = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
        let done = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..b.c)
            .map(|_| {
                let (locks, released_at, gaps, done) = (
                    Arc::clone(&locks),
                    Arc::clone(&released_at),
                    Arc::clone(&gaps),
                    Arc::clone(&done),
                );
                tokio::spawn(async move {
                    let opts = redkit_lock::AcquireOptions::new(Duration::from_secs(10))
                        .wait(Duration::from_secs(120));
                    while done.fetch_add(1, Ordering::Relaxed) < n {
                        let g = locks.acquire("hot", opts.clone()).await.unwrap();
                        let now = origin.elapsed().as_micros() as u64;
                        let last = released_at.load(Ordering::Acquire);
                        if last > 0 {
                            gaps.lock().unwrap().push(now.saturating_sub(last));
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        released_at.store(origin.elapsed().as_micros() as u64, Ordering::Release);
                        g.release().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let gaps = gaps.lock().unwrap();
        let mean = gaps.iter().sum::<u64>() as f64 / gaps.len().max(1) as f64 / 1000.0;
        let worst = gaps.iter().copied().max().unwrap_or(0) as f64 / 1000.0;
        let mode = if notify { "notified" } else { "polling" };
        let line = serde_json::json!({
            "peer": "redkit", "case": "lock-handoff", "mode": mode, "N": n, "C": b.c,
            "mean_handoff_ms": (mean * 100.0).round() / 100.0,
            "max_handoff_ms": (worst * 100.0).round() / 100.0,
        });
        println!("{line}");
    }
}
