//! `geo`: latency of radius searches on an index of `POINTS` (default 1,000,000) places
//! spread over a 6° × 6° area (about 480 × 670 km, ~3 places per km²), one caller
//! awaiting one search at a time, next to the raw `GEOSEARCH` a hand-written index would
//! send on the same connection and the same key. Modes: every place within 2 km
//! (~40 hits); the 50 nearest within 10 km; and `nearest-50`, where redkit's
//! `nearest(k = 50)` (radius from 1 km, growing fourfold) runs against the raw 10 km
//! search a hand-written index would guess. Rounds rotate the order; each line is
//! the median round.

use std::time::{Duration, Instant};

use redkit_core::{Redis, RedisConfig, redis};
use redkit_geo::{GeoIndex, Place, Point, RedisGeoIndex, Search, Unit};

use crate::{Bench, Rounds, env_usize};

fn centre(i: usize) -> Point {
    let mut rng = fastrand::Rng::with_seed(i as u64);
    Point::new(2.5 + rng.f64() * 5.0, 44.5 + rng.f64() * 5.0)
}

async fn load(geo: &RedisGeoIndex, redis: &Redis, points: usize) {
    let _: () = redis
        .query(redis::cmd("DEL").arg(geo.key()))
        .await
        .expect("DEL");
    let mut rng = fastrand::Rng::with_seed(7);
    for start in (0..points).step_by(1000) {
        let places: Vec<Place> = (start..(start + 1000).min(points))
            .map(|i| {
                Place::new(
                    format!("driver:{i}"),
                    2.0 + rng.f64() * 6.0,
                    44.0 + rng.f64() * 6.0,
                )
            })
            .collect();
        geo.add(&places).await.expect("add");
    }
}

type Hits = Vec<(String, f64, (f64, f64))>;

async fn raw(redis: &Redis, key: &str, p: Point, radius_km: f64, count: Option<usize>) -> usize {
    let mut c = redis::cmd("GEOSEARCH");
    c.arg(key)
        .arg("FROMLONLAT")
        .arg(p.longitude)
        .arg(p.latitude)
        .arg("BYRADIUS")
        .arg(radius_km)
        .arg("km")
        .arg("ASC");
    if let Some(n) = count {
        c.arg("COUNT").arg(n);
    }
    c.arg("WITHDIST").arg("WITHCOORD");
    let hits: Hits = redis.query(&c).await.expect("GEOSEARCH");
    hits.len()
}

async fn measure(
    mode: &str,
    who: &str,
    geo: &RedisGeoIndex,
    redis: &Redis,
    ops: usize,
) -> (Vec<Duration>, usize) {
    let (radius, count) = match mode {
        "radius-2km" => (2.0, None),
        _ => (10.0, Some(50)),
    };
    let mut lat = Vec::with_capacity(ops);
    let mut hits = 0;
    for i in 0..ops {
        let p = centre(i);
        let t = Instant::now();
        hits += if who == "redkit" && mode == "nearest-50" {
            let near = geo.nearest(redkit_geo::Center::Point(p), 50, 1000.0);
            near.await.expect("nearest").len()
        } else if who == "redkit" {
            let mut s = Search::radius(p, radius, Unit::Kilometers);
            if let Some(n) = count {
                s = s.count(n);
            }
            geo.search(&s).await.expect("search").len()
        } else {
            raw(redis, geo.key(), p, radius, count).await
        };
        lat.push(t.elapsed());
    }
    (lat, hits)
}

pub(crate) async fn run(b: &Bench) {
    let points = env_usize("POINTS").unwrap_or(1_000_000);
    let rounds = env_usize("ROUNDS").unwrap_or(5);
    let config = RedisConfig::builder().url(&b.url).build().expect("config");
    let redis = Redis::from_config(config).await.expect("connect");
    let geo = RedisGeoIndex::with_prefix(&redis, "bench", "drivers").expect("index");
    let started = Instant::now();
    load(&geo, &redis, points).await;
    eprintln!("loaded {points} places in {:?}", started.elapsed());
    for mode in ["radius-2km", "nearest-50-in-10km", "nearest-50"] {
        let mut paths = [
            ("redis-rs", Rounds::default(), 0),
            ("redkit", Rounds::default(), 0),
        ];
        for round in 0..rounds {
            for k in 0..2 {
                let (who, samples, hits) = &mut paths[(round + k) % 2];
                let (lat, found) = measure(mode, who, &geo, &redis, b.n).await;
                samples.push(lat);
                *hits += found;
            }
        }
        let calls = (rounds * b.n).max(1) as f64;
        let paths = paths
            .into_iter()
            .map(|(w, r, hits)| {
                let mean_hits = (hits as f64 / calls * 10.0).round() / 10.0;
                (
                    w,
                    r,
                    serde_json::json!({ "points": points, "mean_hits": mean_hits }),
                )
            })
            .collect();
        Rounds::report("geo", mode, b.n, paths);
    }
}
