//! `cargo run --example geo`: nearest drivers for a ride request — drivers move, the
//! rider asks for the closest ones with their names, and a driver that goes off duty
//! leaves with its metadata.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory index.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use redkit::geo::{Center, GeoIndex, MemoryGeoIndex, Place, Point, RedisGeoIndex, Search, Unit};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("drivers-{}", std::process::id());
    let local = redkit_testkit::local_redis().await?;
    let drivers: Arc<dyn GeoIndex> = match &local {
        Some(l) => Arc::new(RedisGeoIndex::with_prefix(&l.redis, "example", &name)?),
        None => {
            println!("no Redis available: using the in-memory index");
            Arc::new(MemoryGeoIndex::new())
        }
    };

    // 200 drivers around central Paris, on a deterministic spiral
    let places: Vec<Place> = (0..200)
        .map(|i| {
            let a = f64::from(i) * 2.4;
            let r = 0.0006 * f64::from(i);
            Place::new(
                format!("car:{i}"),
                2.3522 + r * a.cos(),
                48.8566 + r * a.sin(),
            )
            .metadata(format!(r#"{{"driver":"D{i}","seats":{}}}"#, 3 + i % 4))
        })
        .collect();
    println!("{} drivers on duty", drivers.add(&places).await?);

    // a driver moves: same id, new position, metadata kept
    drivers
        .add(&[Place::new("car:150", 2.3380, 48.8610)])
        .await?;

    let rider = Point::new(2.3376, 48.8606);
    let close = drivers
        .search(
            &Search::radius(rider, 1.0, Unit::Kilometers)
                .count(3)
                .with_metadata(),
        )
        .await?;
    println!("three nearest within 1 km of the rider:");
    for hit in &close {
        println!(
            "  {:<8} {:>7.4} km  {}",
            hit.id,
            hit.distance,
            hit.metadata.as_deref().unwrap_or("-")
        );
    }

    // the nearest 5 wherever they are: the radius grows from 200 m until 5 are found
    let five = drivers.nearest(Center::Point(rider), 5, 200.0).await?;
    println!(
        "nearest five: {:?}",
        five.iter().map(|h| h.id.as_str()).collect::<Vec<_>>()
    );

    let d = drivers.distance("car:0", "car:150", Unit::Meters).await?;
    println!("car:0 to car:150: {d:?} m");

    // a box search, 2 km × 1 km around a driver
    let boxed = drivers
        .search(&Search::boxed_around("car:0", 2.0, 1.0, Unit::Kilometers).count(100))
        .await?;
    println!("{} drivers in a 2 km x 1 km box around car:0", boxed.len());

    drivers.remove(&["car:150"]).await?;
    println!(
        "car:150 off duty: metadata now {:?}",
        drivers.metadata(&["car:150"]).await?
    );

    match drivers.add(&[Place::new("car:x", 0.0, 86.0)]).await {
        Err(e) => println!("a place past 85.05112878° is refused: {e}"),
        Ok(n) => println!("unexpected: {n}"),
    }
    Ok(())
}
