//! `raw`: the cost of the connection layer alone. One operation is one command: even
//! operations SET a value (`VALUE_BYTES`, default 100), odd ones GET it, over 1000 keys.

use redkit_core::{Redis, RedisConfig, redis};

use crate::{Bench, report, run_concurrent};

fn value() -> String {
    "x".repeat(crate::env_usize("VALUE_BYTES").unwrap_or(100))
}

/// The command of operation `i`.
fn command(i: usize, value: &str) -> redis::Cmd {
    let key = format!("bench:raw:{}", i % 1000);
    if i.is_multiple_of(2) {
        redis::cmd("SET").arg(key).arg(value).to_owned()
    } else {
        redis::cmd("GET").arg(key).to_owned()
    }
}

/// Measures a bare redis-rs connection of type `C` (the baseline).
async fn bare<C>(b: &Bench, conn: C) -> f64
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    let value = value();
    run_concurrent(b.n, b.c, move |i| {
        let mut conn = conn.clone();
        let cmd = command(i, &value);
        async move {
            let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
        }
    })
    .await
}

/// Measures redkit's shared connection.
async fn shared(b: &Bench, handle: Redis) -> f64 {
    let value = value();
    run_concurrent(b.n, b.c, move |i| {
        let handle = handle.clone();
        let cmd = command(i, &value);
        async move {
            let _: redis::Value = handle.query(&cmd).await.unwrap();
        }
    })
    .await
}

/// Measures a pool checkout per operation.
async fn pooled(b: &Bench, handle: Redis) -> f64 {
    let value = value();
    run_concurrent(b.n, b.c, move |i| {
        let handle = handle.clone();
        let cmd = command(i, &value);
        async move {
            let mut conn = handle.dedicated().await.unwrap();
            let _: redis::Value = conn.query(&cmd).await.unwrap();
        }
    })
    .await
}

async fn connect(b: &Bench, nodelay: bool) -> Redis {
    let config = RedisConfig::builder()
        .url(&b.url)
        .pool_size(b.c)
        .tcp_nodelay(nodelay)
        .build()
        .expect("config");
    Redis::from_config(config).await.expect("connect")
}

/// Runs every path in rounds, in a rotating order (so none always profits from running
/// last), and reports the median of each.
pub(crate) async fn run(b: &Bench) {
    let rounds = crate::env_usize("ROUNDS").unwrap_or(5).max(1);
    let with_nodelay = connect(b, true).await;
    let without_nodelay = connect(b, false).await;
    // Fill the pool first so connection setup is not measured.
    let mut held = Vec::new();
    for _ in 0..b.c {
        held.push(with_nodelay.dedicated().await.expect("pool"));
    }
    drop(held);
    let client = redis::Client::open(b.url.as_str()).expect("url");
    let multiplexed = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let manager = redis::aio::ConnectionManager::new(client)
        .await
        .expect("connect");

    let labels = [
        ("redkit", "shared"),
        ("redkit", "shared-nodelay-off"),
        ("redkit", "pool-checkout"),
        ("redis-rs", "multiplexed"),
        ("redis-rs", "connection-manager"),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
    for round in 0..rounds {
        // Rotate the order each round: whichever path runs later finds a warmer server.
        for k in 0..labels.len() {
            let path = (round + k) % labels.len();
            let ops = match path {
                0 => shared(b, with_nodelay.clone()).await,
                1 => shared(b, without_nodelay.clone()).await,
                2 => pooled(b, with_nodelay.clone()).await,
                3 => bare(b, multiplexed.clone()).await,
                _ => bare(b, manager.clone()).await,
            };
            results[path].push(ops);
        }
    }
    for ((peer, mode), mut values) in labels.into_iter().zip(results) {
        values.sort_by(f64::total_cmp);
        let median = values[values.len() / 2];
        report(peer, "raw", mode, b.n, b.c, "ops_per_s", median);
    }

    let mut del = redis::cmd("DEL");
    for i in 0..1000 {
        del.arg(format!("bench:raw:{i}"));
    }
    let _: i64 = with_nodelay.query(&del).await.unwrap();
}
