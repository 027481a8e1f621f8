//! Redis-only behaviour: the grid-edge pitfall of raw GEOADD, agreement between the memory
//! index and Redis on random points, bad names, foreign keys and a server that goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use redkit_core::redis::{Value, cmd};
use redkit_geo::{
    Error, GeoIndex, MAX_LATITUDE, MemoryGeoIndex, Place, Point, RedisGeoIndex, Search, Unit,
};

fn index(redis: &redkit_core::Redis, name: &str) -> RedisGeoIndex {
    RedisGeoIndex::with_prefix(redis, &redkit_testkit::prefix("geo"), name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_geoadd_loses_the_grid_edges_that_redkit_keeps() {
    let redis = redkit_testkit::redis().await;
    let geo = index(&redis, "edges");
    let raw = format!("{}:raw", geo.key());
    let edges = [("lon180", 180.0, 0.0), ("lat-max", 0.0, MAX_LATITUDE)];
    for (id, lon, lat) in edges {
        let _: i64 = redis
            .query(cmd("GEOADD").arg(&raw).arg(lon).arg(lat).arg(id))
            .await
            .unwrap();
        geo.add(&[Place::new(id, lon, lat)]).await.unwrap();
    }
    // the raw set holds them (GEOPOS answers) but a search covering the globe misses them
    let pos: Vec<Value> = redis
        .query(cmd("GEOPOS").arg(&raw).arg("lon180").arg("lat-max"))
        .await
        .unwrap();
    assert!(pos.iter().all(|p| matches!(p, Value::Array(_))), "{pos:?}");
    let raw_hits: Vec<String> = redis
        .query(
            cmd("GEOSEARCH")
                .arg(&raw)
                .arg("FROMLONLAT")
                .arg(0)
                .arg(0)
                .arg("BYRADIUS")
                .arg(20_100)
                .arg("km")
                .arg("ASC"),
        )
        .await
        .unwrap();
    assert!(raw_hits.is_empty(), "raw GEOSEARCH found {raw_hits:?}");
    let hits = geo
        .search(&Search::radius(
            Point::new(0.0, 0.0),
            20_100.0,
            Unit::Kilometers,
        ))
        .await
        .unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_answers_like_redis_on_random_points() {
    let redis = redkit_testkit::redis().await;
    let geo = index(&redis, "random");
    let memory = MemoryGeoIndex::new();
    let mut rng = fastrand::Rng::with_seed(20_261_123);
    // within ±70° of latitude, where Redis's nine-cell scan is complete
    let places: Vec<Place> = (0..3000)
        .map(|i| {
            Place::new(
                format!("p{i}"),
                rng.f64() * 360.0 - 180.0,
                rng.f64() * 140.0 - 70.0,
            )
        })
        .collect();
    for chunk in places.chunks(1000) {
        geo.add(chunk).await.unwrap();
        memory.add(chunk).await.unwrap();
    }
    let mut compared = 0;
    for _ in 0..200 {
        let centre = Point::new(rng.f64() * 360.0 - 180.0, rng.f64() * 140.0 - 70.0);
        let unit = [Unit::Meters, Unit::Kilometers, Unit::Miles, Unit::Feet][rng.usize(..4)];
        let radius_m = 50_000.0 + rng.f64() * 1_000_000.0;
        let radius = radius_m / unit.meters();
        let search = Search::radius(centre, radius, unit).count(1000);
        let r = geo.search(&search).await.unwrap();
        let m = memory.search(&search).await.unwrap();
        // Redis's own order is by distance
        assert!(
            r.windows(2).all(|w| w[0].distance <= w[1].distance),
            "{r:?}"
        );
        // leave out points within 0.1% of the edge, where rounding may decide
        let keep = |d: f64| (d - radius).abs() > radius * 1e-3;
        let key = |h: &redkit_geo::Hit| (h.distance.to_bits(), h.id.clone());
        let mut rs: Vec<_> = r.iter().filter(|h| keep(h.distance)).collect();
        let mut ms: Vec<_> = m.iter().filter(|h| keep(h.distance)).collect();
        rs.sort_by_key(|h| key(h));
        ms.sort_by_key(|h| key(h));
        let rid: Vec<&str> = rs.iter().map(|h| h.id.as_str()).collect();
        let mid: Vec<&str> = ms.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(rid, mid, "search {search:?}");
        for (a, b) in rs.iter().zip(&ms) {
            assert!(
                (a.distance - b.distance).abs() <= a.distance * 0.005 + 1e-4,
                "{a:?} vs {b:?}"
            );
            assert!(
                (a.point.longitude - b.point.longitude).abs() < 1e-9,
                "{a:?} vs {b:?}"
            );
            assert!(
                (a.point.latitude - b.point.latitude).abs() < 1e-9,
                "{a:?} vs {b:?}"
            );
        }
        compared += rid.len();
    }
    assert!(compared > 1000, "only {compared} hits compared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_foreign_keys_and_a_lost_server_are_typed_errors() {
    let redis = redkit_testkit::redis().await;
    for (prefix, name) in [("app", ""), ("app", "a{b}"), ("a}", "x"), ("", "x")] {
        let e = RedisGeoIndex::with_prefix(&redis, prefix, name).unwrap_err();
        assert!(
            matches!(e, Error::InvalidName(_)),
            "{prefix:?} {name:?}: {e:?}"
        );
    }
    let geo = index(&redis, "foreign");
    let _: () = redis
        .query(cmd("SET").arg(geo.key()).arg("x"))
        .await
        .unwrap();
    let e = geo.add(&[Place::new("p", 0.0, 0.0)]).await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    let e = geo
        .search(&Search::radius(Point::new(0.0, 0.0), 1.0, Unit::Meters))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");

    let mut server = redkit_testkit::Server::start();
    let gone = index(&server.redis().await, "gone");
    gone.add(&[Place::new("p", 0.0, 0.0)]).await.unwrap();
    server.kill();
    let e = gone.position("p").await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
}
