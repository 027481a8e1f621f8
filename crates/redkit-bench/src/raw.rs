//! `raw`: the cost of the connection layer alone.

use redkit_core::{Redis, RedisConfig, redis};

use crate::{Bench, report, run_concurrent};

pub(crate) async fn run(b: &Bench) {
    let config = RedisConfig::builder()
        .url(&b.url)
        .pool_size(b.c)
        .build()
        .expect("config");
    let handle = Redis::from_config(config).await.expect("connect");
    let value = "x".repeat(100);

    // Warm up the pool so its connection setup is not measured.
    let held: Vec<_> = hold_all(b.c, &handle).await;
    drop(held);

    // One operation is one command: even ones SET a key, odd ones GET it.
    let h = handle.clone();
    let v = value.clone();
    let shared = run_concurrent(b.n, b.c, move |i| {
        let h = h.clone();
        let v = v.clone();
        async move {
            let key = format!("bench:raw:{}", i % 1000);
            if i % 2 == 0 {
                let _: () = h.query(redis::cmd("SET").arg(&key).arg(&v)).await.unwrap();
            } else {
                let _: Option<String> = h.query(redis::cmd("GET").arg(&key)).await.unwrap();
            }
        }
    })
    .await;
    report("redkit", "raw", "shared", b.n, b.c, "ops_per_s", shared);

    let h = handle.clone();
    let v = value.clone();
    let pooled = run_concurrent(b.n, b.c, move |i| {
        let h = h.clone();
        let v = v.clone();
        async move {
            let key = format!("bench:raw:{}", i % 1000);
            let mut conn = h.dedicated().await.unwrap();
            if i % 2 == 0 {
                let _: () = conn
                    .query(redis::cmd("SET").arg(&key).arg(&v))
                    .await
                    .unwrap();
            } else {
                let _: Option<String> = conn.query(redis::cmd("GET").arg(&key)).await.unwrap();
            }
        }
    })
    .await;
    report(
        "redkit",
        "raw",
        "pool-checkout",
        b.n,
        b.c,
        "ops_per_s",
        pooled,
    );

    let client = redis::Client::open(b.url.as_str()).expect("url");
    let conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let v = value.clone();
    let bare = run_concurrent(b.n, b.c, move |i| {
        let mut conn = conn.clone();
        let v = v.clone();
        async move {
            let key = format!("bench:raw:{}", i % 1000);
            if i % 2 == 0 {
                let _: () = redis::cmd("SET")
                    .arg(&key)
                    .arg(&v)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            } else {
                let _: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    report(
        "redis-rs",
        "raw",
        "multiplexed",
        b.n,
        b.c,
        "ops_per_s",
        bare,
    );

    let mut del = redis::cmd("DEL");
    for i in 0..1000 {
        del.arg(format!("bench:raw:{i}"));
    }
    let _: i64 = handle.query(&del).await.unwrap();
}

async fn hold_all(c: usize, handle: &Redis) -> Vec<redkit_core::Dedicated> {
    let mut held = Vec::with_capacity(c);
    for _ in 0..c {
        held.push(handle.dedicated().await.expect("pool"));
    }
    held
}
