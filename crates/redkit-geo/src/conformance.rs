//! The suite every [`GeoIndex`] backend must pass. Run it with [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::sync::Arc;

use crate::{
    Area, Center, Error, GeoIndex, Hit, MAX_BATCH, MAX_LATITUDE, Place, Point, Search, Unit,
};

type Make = dyn Fn(&str) -> crate::Result<Arc<dyn GeoIndex>> + Send + Sync;

/// Builds indexes by name over one store, each on a fresh key prefix.
#[derive(Clone)]
pub struct Suite {
    make: Arc<Make>,
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite").finish_non_exhaustive()
    }
}

impl Suite {
    pub fn new(
        make: impl Fn(&str) -> crate::Result<Arc<dyn GeoIndex>> + Send + Sync + 'static,
    ) -> Suite {
        Suite {
            make: Arc::new(make),
        }
    }

    pub fn index(&self, name: &str) -> Arc<dyn GeoIndex> {
        (self.make)(name).unwrap()
    }

    pub fn try_index(&self, name: &str) -> crate::Result<Arc<dyn GeoIndex>> {
        (self.make)(name)
    }
}

/// The places of the Redis documentation's GEOSEARCH examples.
pub fn sicily() -> Vec<Place> {
    vec![
        Place::new("Palermo", 13.361389, 38.115556),
        Place::new("Catania", 15.087269, 37.502669),
        Place::new("edge1", 12.758489, 38.788135),
        Place::new("edge2", 17.241510, 38.788135),
    ]
}

fn ids(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn dists(hits: &[Hit]) -> Vec<f64> {
    hits.iter().map(|h| h.distance).collect()
}

fn close(a: Point, b: Point, tolerance_deg: f64) -> bool {
    (a.longitude - b.longitude).abs() <= tolerance_deg
        && (a.latitude - b.latitude).abs() <= tolerance_deg
}

pub async fn places_are_added_moved_and_removed(s: &Suite) {
    let geo = s.index("places");
    assert_eq!(geo.add(&sicily()).await.unwrap(), 4);
    assert_eq!(geo.count().await.unwrap(), 4);
    // stored at the centre of its cell, as GEOPOS reports it
    let p = geo.position("Palermo").await.unwrap().unwrap();
    assert!(
        close(
            p,
            Point::new(13.361_389_338_970_184, 38.115_556_395_496_3),
            1e-12
        ),
        "{p:?}"
    );
    assert!(close(p, Point::new(13.361389, 38.115556), 3e-6));
    // moving a place is not adding one
    assert_eq!(
        geo.add(&[Place::new("Palermo", 13.4, 38.1)]).await.unwrap(),
        0
    );
    let p = geo.position("Palermo").await.unwrap().unwrap();
    assert!(close(p, Point::new(13.4, 38.1), 3e-6), "{p:?}");
    let got = geo.positions(&["Catania", "Atlantis"]).await.unwrap();
    assert!(got[0].is_some() && got[1].is_none());
    assert_eq!(geo.remove(&["Palermo", "Atlantis"]).await.unwrap(), 1);
    assert_eq!(geo.count().await.unwrap(), 3);
    assert_eq!(geo.position("Palermo").await.unwrap(), None);
    assert_eq!(geo.add(&[]).await.unwrap(), 0);
    assert_eq!(geo.remove(&[]).await.unwrap(), 0);
}

pub async fn distances_come_in_every_unit(s: &Suite) {
    let geo = s.index("dist");
    geo.add(&sicily()).await.unwrap();
    for (unit, want) in [
        (Unit::Meters, 166_274.151_6),
        (Unit::Kilometers, 166.2742),
        (Unit::Miles, 103.3182),
        (Unit::Feet, 545_518.87),
    ] {
        let d = geo
            .distance("Palermo", "Catania", unit)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d, want, "{unit:?}");
    }
    assert_eq!(
        geo.distance("Palermo", "Atlantis", Unit::Meters)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        geo.distance("Palermo", "Palermo", Unit::Meters)
            .await
            .unwrap(),
        Some(0.0)
    );
}

pub async fn radius_searches_sort_and_count(s: &Suite) {
    let geo = s.index("radius");
    geo.add(&sicily()).await.unwrap();
    let from = Point::new(15.0, 37.0);
    let hits = geo
        .search(&Search::radius(from, 200.0, Unit::Kilometers))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["Catania", "Palermo"]);
    assert_eq!(dists(&hits), [56.4413, 190.4424]);
    assert!(close(hits[0].point, Point::new(15.087269, 37.502669), 3e-6));
    assert_eq!(hits[0].metadata, None);
    let far = geo
        .search(&Search::radius(from, 200.0, Unit::Kilometers).farthest_first())
        .await
        .unwrap();
    assert_eq!(ids(&far), ["Palermo", "Catania"]);
    let one = geo
        .search(&Search::radius(from, 500.0, Unit::Kilometers).count(1))
        .await
        .unwrap();
    assert_eq!(ids(&one), ["Catania"]);
    // the radius is inclusive, in the search's unit
    let miles = geo
        .search(&Search::radius(from, 118.34, Unit::Miles))
        .await
        .unwrap();
    assert_eq!(ids(&miles), ["Catania", "Palermo"]);
    assert_eq!(miles[0].distance, 35.0711);
    // around a place: from its stored position, itself included at distance 0
    let around = geo
        .search(&Search::radius_around("Catania", 200.0, Unit::Kilometers))
        .await
        .unwrap();
    assert_eq!(ids(&around), ["Catania", "Palermo"]);
    assert_eq!(around[0].distance, 0.0);
    assert_eq!(around[1].distance, 166.2742);
    let e = geo
        .search(&Search::radius_around("Atlantis", 1.0, Unit::Meters))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::UnknownPlace(id) if id == "Atlantis"),
        "{e:?}"
    );
    let empty = s.index("empty");
    assert!(
        empty
            .search(&Search::radius(from, 1.0, Unit::Meters))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn box_searches_measure_width_along_each_parallel(s: &Suite) {
    let geo = s.index("box");
    geo.add(&sicily()).await.unwrap();
    let hits = geo
        .search(&Search::boxed(
            Point::new(15.0, 37.0),
            400.0,
            400.0,
            Unit::Kilometers,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["Catania", "Palermo", "edge2", "edge1"]);
    assert_eq!(dists(&hits), [56.4413, 190.4424, 279.7403, 279.7405]);
    // the width is measured along each point's own parallel: the edges are 198.9 km east
    // and west of the centre along 37°N but 194.3 km along their own 38.79°N, so a box 390
    // km wide holds them and one 380 km wide does not
    let narrow = geo
        .search(&Search::boxed(
            Point::new(15.0, 37.0),
            390.0,
            400.0,
            Unit::Kilometers,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&narrow), ["Catania", "Palermo", "edge2", "edge1"]);
    let narrower = geo
        .search(&Search::boxed(
            Point::new(15.0, 37.0),
            380.0,
            400.0,
            Unit::Kilometers,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&narrower), ["Catania", "Palermo"]);
    let around = geo
        .search(&Search::boxed_around(
            "Catania",
            100.0,
            100.0,
            Unit::Kilometers,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&around), ["Catania"]);
}

pub async fn nearest_k_grows_its_radius_until_it_has_k(s: &Suite) {
    let geo = s.index("nearest");
    let places: Vec<Place> = (1..=5)
        .map(|i| Place::new(format!("p{i}"), f64::from(i) * 10.0, 0.0))
        .collect();
    geo.add(&places).await.unwrap();
    let near = geo
        .nearest(Center::Point(Point::new(0.0, 0.0)), 3, 10.0)
        .await
        .unwrap();
    assert_eq!(ids(&near), ["p1", "p2", "p3"]);
    assert_eq!(near[0].distance, 1_112_263.232);
    let all = geo
        .nearest(Center::Point(Point::new(-170.0, 0.0)), 10, 1.0)
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        ["p5", "p4", "p3", "p2", "p1"],
        "the whole globe, nearest first"
    );
    let near = geo
        .nearest(Center::Place("p3".into()), 2, 1000.0)
        .await
        .unwrap();
    assert_eq!(near[0].id, "p3");
    assert_eq!(near.len(), 2);
}

pub async fn the_antimeridian_and_the_grid_edges_are_searchable(s: &Suite) {
    let geo = s.index("edges");
    geo.add(&[
        Place::new("east", 179.5, 36.0),
        Place::new("west", -179.5, 36.0),
        Place::new("dateline", 180.0, 0.0),
        Place::new("dateline-west", -180.0, 0.0),
        Place::new("north", 0.0, MAX_LATITUDE),
        Place::new("south", 0.0, -MAX_LATITUDE),
    ])
    .await
    .unwrap();
    let hits = geo
        .search(&Search::boxed(
            Point::new(179.0, 37.0),
            400.0,
            400.0,
            Unit::Kilometers,
        ))
        .await
        .unwrap();
    assert_eq!(ids(&hits), ["east", "west"]);
    // longitude 180 and latitude 85.05112878 are stored (and searched from) a hair inside
    // the grid, so they are found (Redis would keep them where GEOSEARCH never looks);
    // either side of the antimeridian finds both
    for lon in [180.0, -180.0] {
        let hits = geo
            .search(&Search::radius(Point::new(lon, 0.0), 1.0, Unit::Kilometers))
            .await
            .unwrap();
        let mut found = ids(&hits);
        found.sort();
        assert_eq!(found, ["dateline", "dateline-west"], "from {lon}");
        assert!(hits.iter().all(|h| h.distance < 0.001), "{hits:?}");
    }
    let p = geo.position("dateline").await.unwrap().unwrap();
    assert!(close(p, Point::new(180.0, 0.0), 3e-6), "{p:?}");
    for (id, lat) in [("north", MAX_LATITUDE), ("south", -MAX_LATITUDE)] {
        let hits = geo
            .search(&Search::radius(Point::new(0.0, lat), 1.0, Unit::Kilometers))
            .await
            .unwrap();
        assert_eq!(ids(&hits), [id]);
    }
}

pub async fn metadata_comes_with_searches_and_goes_with_removals(s: &Suite) {
    let geo = s.index("meta");
    geo.add(&[
        Place::new("d1", 2.35, 48.85).metadata(r#"{"name":"Ann","car":"{blue}"}"#),
        Place::new("d2", 2.36, 48.86),
    ])
    .await
    .unwrap();
    let search = Search::radius(Point::new(2.35, 48.85), 5.0, Unit::Kilometers).with_metadata();
    let hits = geo.search(&search).await.unwrap();
    assert_eq!(ids(&hits), ["d1", "d2"]);
    assert_eq!(
        hits[0].metadata.as_deref(),
        Some(r#"{"name":"Ann","car":"{blue}"}"#)
    );
    assert_eq!(hits[1].metadata, None);
    // moving without metadata keeps it; moving with metadata replaces it
    geo.add(&[Place::new("d1", 2.351, 48.851)]).await.unwrap();
    assert!(geo.metadata(&["d1"]).await.unwrap()[0].is_some());
    geo.add(&[Place::new("d1", 2.352, 48.852).metadata("Ann")])
        .await
        .unwrap();
    assert_eq!(
        geo.metadata(&["d1", "d2"]).await.unwrap(),
        [Some("Ann".into()), None]
    );
    geo.remove(&["d1"]).await.unwrap();
    geo.add(&[Place::new("d1", 2.35, 48.85)]).await.unwrap();
    assert_eq!(
        geo.metadata(&["d1"]).await.unwrap(),
        [None],
        "removed with its place"
    );
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let geo = s.index("bad");
    for (lon, lat) in [
        (180.000_001, 0.0),
        (-180.5, 0.0),
        (0.0, 85.06),
        (0.0, -90.0),
        (f64::NAN, 0.0),
        (0.0, f64::INFINITY),
    ] {
        let e = geo.add(&[Place::new("p", lon, lat)]).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidCoordinates(_)),
            "{lon},{lat}: {e:?}"
        );
        let e = geo
            .search(&Search::radius(Point::new(lon, lat), 1.0, Unit::Meters))
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::InvalidCoordinates(_)),
            "{lon},{lat}: {e:?}"
        );
    }
    assert_eq!(
        geo.count().await.unwrap(),
        0,
        "nothing of a refused batch is added"
    );
    let long = "x".repeat(crate::MAX_ID_LEN + 1);
    for id in ["", long.as_str()] {
        let e = geo.add(&[Place::new(id, 0.0, 0.0)]).await.unwrap_err();
        assert!(matches!(e, Error::InvalidPlace(_)), "{e:?}");
        let e = geo.position(id).await.unwrap_err();
        assert!(matches!(e, Error::InvalidPlace(_)), "{e:?}");
    }
    let e = geo
        .add(&[Place::new("p", 0.0, 0.0).metadata("m".repeat(crate::MAX_METADATA_LEN + 1))])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidPlace(_)), "{e:?}");
    let at = Point::new(0.0, 0.0);
    for search in [
        Search::radius(at, 0.0, Unit::Meters),
        Search::radius(at, -1.0, Unit::Meters),
        Search::radius(at, f64::NAN, Unit::Meters),
        Search::radius(at, f64::INFINITY, Unit::Meters),
        Search::boxed(at, 0.0, 1.0, Unit::Meters),
        Search::boxed(at, 1.0, -1.0, Unit::Meters),
        Search::radius(at, 1.0, Unit::Meters).count(0),
        Search::radius(at, 1.0, Unit::Meters).count(MAX_BATCH + 1),
        Search::new(
            Center::Place(String::new()),
            Area::Radius(1.0),
            Unit::Meters,
        ),
    ] {
        let e = geo.search(&search).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_) | Error::InvalidPlace(_)),
            "{search:?}: {e:?}"
        );
    }
    let e = geo.nearest(Center::Point(at), 1, 0.0).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let too_many: Vec<Place> = (0..=MAX_BATCH)
        .map(|i| Place::new(i.to_string(), 0.0, 0.0))
        .collect();
    assert!(matches!(
        geo.add(&too_many).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));
    // an area with more places than one reply may hold needs a count
    let crowd: Vec<Place> = (0..MAX_BATCH)
        .map(|i| {
            Place::new(
                format!("c{i}"),
                0.0001 * (i % 100) as f64,
                0.0001 * (i / 100) as f64,
            )
        })
        .collect();
    geo.add(&crowd).await.unwrap();
    geo.add(&[Place::new("one-more", 0.0, 0.0)]).await.unwrap();
    let e = geo
        .search(&Search::radius(at, 10.0, Unit::Kilometers))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let some = geo
        .search(&Search::radius(at, 10.0, Unit::Kilometers).count(5))
        .await
        .unwrap();
    assert_eq!(some.len(), 5);
}

/// Counts the searches `nearest` makes through the trait.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn GeoIndex>,
    searches: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl GeoIndex for Counting {
    async fn add(&self, places: &[Place]) -> crate::Result<u64> {
        self.inner.add(places).await
    }
    async fn remove(&self, ids: &[&str]) -> crate::Result<u64> {
        self.inner.remove(ids).await
    }
    async fn positions(&self, ids: &[&str]) -> crate::Result<Vec<Option<Point>>> {
        self.inner.positions(ids).await
    }
    async fn metadata(&self, ids: &[&str]) -> crate::Result<Vec<Option<String>>> {
        self.inner.metadata(ids).await
    }
    async fn distance(&self, a: &str, b: &str, unit: Unit) -> crate::Result<Option<f64>> {
        self.inner.distance(a, b, unit).await
    }
    async fn search(&self, search: &Search) -> crate::Result<Vec<Hit>> {
        self.searches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.search(search).await
    }
    async fn count(&self) -> crate::Result<u64> {
        self.inner.count().await
    }
}

/// Item 10 of issue 18: every number a search takes is checked before anything is sent
/// (NaN, infinite, zero, negative, counts past the cap), the largest finite radius and box
/// agree between backends (the whole globe), and `nearest` from a subnormal start radius
/// stays a handful of searches.
pub async fn edge_numbers_are_typed_errors_or_agree(s: &Suite) {
    let geo = s.index("edge-numbers");
    geo.add(&sicily()).await.unwrap();
    let at = Point::new(0.0, 0.0);
    for search in [
        Search::boxed(at, f64::NAN, 1.0, Unit::Meters),
        Search::boxed(at, 1.0, f64::INFINITY, Unit::Meters),
        Search::boxed(at, f64::NEG_INFINITY, 1.0, Unit::Meters),
        Search::radius(at, f64::NEG_INFINITY, Unit::Meters),
        Search::radius(at, -0.0, Unit::Meters),
        Search::radius(Point::new(f64::NAN, 0.0), 1.0, Unit::Meters),
        Search::radius(Point::new(0.0, f64::INFINITY), 1.0, Unit::Meters),
        Search::radius(at, 1.0, Unit::Meters).count(usize::MAX),
    ] {
        let e = geo.search(&search).await.unwrap_err();
        assert!(
            matches!(e, Error::InvalidArgument(_) | Error::InvalidCoordinates(_)),
            "{search:?}: {e:?}"
        );
    }
    for unit in [Unit::Meters, Unit::Kilometers, Unit::Miles, Unit::Feet] {
        for search in [
            Search::radius(at, f64::MAX, unit),
            Search::boxed(at, f64::MAX, f64::MAX, unit),
        ] {
            let hits = geo.search(&search).await.unwrap();
            assert_eq!(hits.len(), 4, "{search:?}");
        }
    }
    for start in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
        let e = geo.nearest(Center::Point(at), 1, start).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{start}: {e:?}");
    }
    let e = geo
        .nearest(Center::Point(at), usize::MAX, 1.0)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let counting = Counting {
        inner: geo.clone(),
        searches: Default::default(),
    };
    for start in [f64::MIN_POSITIVE / 2.0, 1e-300, f64::MAX] {
        counting
            .searches
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let hits = counting
            .nearest(Center::Point(Point::new(-170.0, 0.0)), 1, start)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1, "{start}");
        let n = counting.searches.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n <= 14, "{start:e}: {n} searches");
    }
}

/// Runs every case of the suite as a test: `conformance_suite!(name, async { Suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                places_are_added_moved_and_removed,
                distances_come_in_every_unit,
                radius_searches_sort_and_count,
                box_searches_measure_width_along_each_parallel,
                nearest_k_grows_its_radius_until_it_has_k,
                edge_numbers_are_typed_errors_or_agree,
                the_antimeridian_and_the_grid_edges_are_searchable,
                metadata_comes_with_searches_and_goes_with_removals,
                bad_input_is_a_typed_error
            );
        }
    };
    (@case $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let suite: $crate::conformance::Suite = $make.await;
                $crate::conformance::$case(&suite).await;
            }
        )+
    };
}
