//! `cargo run --example streams`: an order pipeline on a consumer group — a producer,
//! two workers (one of which dies mid-batch), a poison order that ends in the dead-letter
//! stream, and the group's state at the end.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory store.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redkit::streams::{
    Consumer, MemoryStreamStore, Message, Producer, RedisStreamStore, StreamStore,
};

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    total_cents: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prefix = format!("example-{}", std::process::id());
    let local = redkit_testkit::local_redis().await?;
    let store: Arc<dyn StreamStore> = match &local {
        Some(l) => Arc::new(RedisStreamStore::new(&l.redis, &prefix)?),
        None => {
            println!("no Redis available: using the in-memory store");
            Arc::new(MemoryStreamStore::new())
        }
    };

    let orders: Vec<Order> = (1..=200)
        .map(|id| Order {
            id,
            total_cents: if id == 42 { -1 } else { (id * 250) as i64 },
        })
        .collect();
    Producer::<Order>::new(store.clone(), "orders")
        .send_batch(&orders)
        .await?;
    println!("200 orders queued");

    let billed = Arc::new(AtomicU64::new(0));
    let worker = |name: &str, slow: bool| {
        let billed = billed.clone();
        Consumer::builder(store.clone(), "orders", "billing")
            .name(name)
            .concurrency(8)
            .block(Duration::from_millis(200))
            .claim_after(Duration::from_millis(500))
            .claim_every(Duration::from_millis(200))
            .max_deliveries(3)
            .build()
            .expect("valid consumer")
            .run(move |m: Message<Order>| {
                let billed = billed.clone();
                async move {
                    if slow {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if m.payload.total_cents < 0 {
                        return Err(format!("order {} has a negative total", m.payload.id));
                    }
                    billed.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            })
    };
    let doomed = worker("worker-a", true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    doomed.abort();
    println!(
        "worker-a died after billing {} orders, leaving some mid-flight",
        billed.load(Ordering::Relaxed)
    );

    let survivor = worker("worker-b", false);
    while billed.load(Ordering::Relaxed) < 199 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the poison order fail 3 times
    let report = survivor.shutdown(Duration::from_secs(2)).await;
    println!("worker-b: {report:?}");
    println!(
        "billed {} of 199 good orders",
        billed.load(Ordering::Relaxed)
    );
    for dead in store.dead_letters("orders", 10).await? {
        println!(
            "dead letter {}: {}",
            dead.field("_source_id").unwrap_or("?"),
            dead.field("_reason").unwrap_or("?")
        );
    }
    for g in store.groups("orders").await? {
        println!("group {}: pending {}, lag {:?}", g.name, g.pending, g.lag);
    }
    Ok(())
}
