//! `cargo run --example cache`: a product catalog in front of a slow database — a
//! stampede on a cold key loads once across two "processes", missing products are
//! remembered, a price change reaches the other process's L1, and a supplier's products
//! go together by tag; then stock levels are written behind to the "database" in
//! coalesced batches and drained on shutdown.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the memory backend.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redkit::cache::bytes::Bytes;
use redkit::cache::{
    BoxError, Cache, CacheConfig, CacheExt, LoadOptions, MemoryCache, RedisCache, SetOptions,
    Version, Write, WriteBehind, Writer,
};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Product {
    name: String,
    cents: u64,
}

/// The "database": 100 ms per query, counting queries.
async fn query(id: u32, queries: Arc<AtomicU32>) -> Result<Option<Product>, std::io::Error> {
    queries.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok((id < 1000).then(|| Product {
        name: format!("product {id}"),
        cents: 999 + u64::from(id),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CacheConfig::new()
        .prefix(format!("example-{}", std::process::id()))
        .namespace("catalog")
        .ttl(Duration::from_secs(300))
        .negative_ttl(Duration::from_secs(30))
        .distributed_single_flight(Duration::from_secs(2), Duration::from_secs(2))
        .local(10_000, Duration::from_secs(30));
    let local = redkit_testkit::local_redis().await?;
    // two handles stand for two processes of the same service
    let (a, b): (Arc<dyn Cache>, Arc<dyn Cache>) = match &local {
        Some(l) => {
            let other = redkit::Redis::from_config(l.redis.config().clone()).await?;
            (
                Arc::new(RedisCache::new(&l.redis, config.clone()).await?),
                Arc::new(RedisCache::new(&other, config).await?),
            )
        }
        None => {
            println!("no Redis available: using the memory backend");
            let one = MemoryCache::new(config)?;
            let two = one.handle();
            (Arc::new(one), Arc::new(two))
        }
    };
    let queries = Arc::new(AtomicU32::new(0));

    // 200 requests for the same cold product, half on each process
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let queries = queries.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load(
                    "product:7",
                    &LoadOptions::new().tags(["supplier:acme"]),
                    move || query(7, queries),
                )
                .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "200 concurrent requests on a cold key: {} database query, {:?}",
        queries.load(Ordering::SeqCst),
        start.elapsed()
    );

    // a product that does not exist is remembered as missing
    for _ in 0..3 {
        let q = queries.clone();
        let p: Option<Product> = a
            .get_or_load("product:5000", &LoadOptions::new(), move || query(5000, q))
            .await?;
        assert!(p.is_none());
    }
    println!(
        "three lookups of a missing product: {} queries in all so far",
        queries.load(Ordering::SeqCst)
    );

    // hits from the in-process L1
    let start = Instant::now();
    for _ in 0..10_000 {
        let _: Option<Product> = b.get("product:7").await?;
    }
    println!(
        "10,000 reads on process b: {:?} per read ({} from L1)",
        start.elapsed() / 10_000,
        b.metrics().l1_hits
    );

    // a price change on process a reaches process b's L1 by message
    a.set(
        "product:7",
        &Product {
            name: "product 7".into(),
            cents: 799,
        },
        &SetOptions::new().tags(["supplier:acme"]),
    )
    .await?;
    let start = Instant::now();
    loop {
        let p: Option<Product> = b.get("product:7").await?;
        if p.map(|p| p.cents) == Some(799) {
            break;
        }
        tokio::task::yield_now().await;
    }
    println!(
        "the new price reached process b after {:?}",
        start.elapsed()
    );

    // the supplier leaves: its products go together
    let gone = b.invalidate_tags(&["supplier:acme"]).await?;
    println!("supplier acme invalidated: {gone} entries removed");
    println!("metrics of process a: {:?}", a.metrics());
    a.clear().await?;

    write_behind(local.as_ref().map(|l| &l.redis)).await
}

/// The "database" of stock levels: each batch is one transaction; it keeps a record's
/// newest version and ignores an older one delivered again.
#[derive(Debug, Default)]
struct Stock {
    rows: Mutex<HashMap<String, (Version, Option<Bytes>)>>,
    batches: AtomicU32,
}

#[async_trait::async_trait]
impl Writer for Stock {
    async fn write(&self, writes: &[Write]) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(5)).await; // one round trip to the database
        let mut rows = self.rows.lock().expect("rows");
        for w in writes {
            let version = w.version.expect("write-behind writes carry a version");
            let row = rows.entry(w.key.clone()).or_insert((version, None));
            if row.0 <= version {
                *row = (version, w.value.clone()); // UPDATE … WHERE version < $version
            }
        }
        self.batches.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn write_behind(redis: Option<&redkit::Redis>) -> Result<(), Box<dyn std::error::Error>> {
    let stock = Arc::new(Stock::default());
    let config = CacheConfig::new()
        .prefix(format!("example-{}", std::process::id()))
        .namespace("stock")
        .write_behind(
            stock.clone(),
            WriteBehind::new().interval(Duration::from_millis(50)),
        );
    let cache: Arc<dyn Cache> = match redis {
        Some(r) => Arc::new(RedisCache::new(r, config).await?),
        None => Arc::new(MemoryCache::new(config)?),
    };
    // 2,000 stock changes on 20 products: each returns once the change is durable in Redis
    let start = Instant::now();
    for i in 0..2000u32 {
        cache
            .set(&format!("stock:{}", i % 20), &(i / 20), &SetOptions::new())
            .await?;
    }
    println!(
        "2,000 stock writes acknowledged in {:?}; reads see them at once: stock:3 = {:?}",
        start.elapsed(),
        cache.get::<u32>("stock:3").await?
    );
    // the flusher hands them to the database in batches, newest per product
    let report = cache.shutdown(Duration::from_secs(10)).await?;
    let m = cache.metrics();
    println!(
        "shutdown drained the log ({report:?}): {} database batches, {} rows written, \
         {} superseded writes skipped",
        stock.batches.load(Ordering::SeqCst),
        m.writes_flushed,
        m.writes_coalesced
    );
    let row = stock.rows.lock().expect("rows")["stock:3"].1.clone();
    println!("database row stock:3 = {row:?}");
    cache.clear().await?;
    Ok(())
}
