//! `cargo run --example pubsub`: live price updates — typed messages to several
//! subscribers, a pattern subscription, a slow subscriber that keeps only the latest
//! prices, and a payload of the wrong type that is reported instead of crashing.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory bus.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use redkit::pubsub::{
    Event, LagPolicy, MemoryPubSub, Options, PubSub, PubSubExt, RedisPubSub, Topic,
};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Price {
    sku: String,
    cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prefix = format!("example-{}", std::process::id());
    let local = redkit_testkit::local_redis().await?;
    let bus: Arc<dyn PubSub> = match &local {
        Some(l) => Arc::new(RedisPubSub::with_prefix(&l.redis, &prefix)?),
        None => {
            println!("no Redis available: using the in-memory bus");
            Arc::new(MemoryPubSub::new())
        }
    };
    let tea = Topic::Channel("prices.tea".into());
    let mut shop = bus.subscribe::<Price>(&tea).await?;
    let mut all = bus
        .subscribe::<Price>(&Topic::Pattern("prices.*".into()))
        .await?;
    let mut dashboard = bus
        .subscribe_with::<Price>(&tea, Options::new().buffer(3).lag(LagPolicy::DropOldest))
        .await?;

    for cents in [350, 360, 370, 380, 390, 400] {
        bus.publish(
            &tea,
            &Price {
                sku: "tea".into(),
                cents,
            },
        )
        .await?;
    }
    bus.publish_raw(&tea, b"not a price").await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let next = |e: Option<Event<Price>>| format!("{e:?}");
    println!("shop gets every update:");
    for _ in 0..7 {
        println!("  {}", next(shop.recv().await));
    }
    if let Some(Event::Message(m)) = all.recv().await {
        println!(
            "the pattern subscriber hears {} via {:?}",
            m.channel, m.pattern
        );
    }
    println!("the slow dashboard (buffer 3, drop oldest) hears:");
    for _ in 0..4 {
        println!("  {}", next(dashboard.recv().await));
    }
    Ok(())
}
