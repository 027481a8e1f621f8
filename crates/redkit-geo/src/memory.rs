//! The in-memory backend: Redis's cell encoding and distance formula over a map, searched
//! by brute force.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::point::{lat_distance, reply_distance};
use crate::{
    Area, Center, Error, GeoIndex, Hit, MAX_BATCH, Order, Place, Point, Result, Search, Unit,
    check_ids, check_places,
};

/// A [`GeoIndex`] in process memory, for tests and single-process apps.
///
/// Places are kept at the centre of the same 52-bit geohash cell Redis stores them in,
/// and distances use Redis's haversine and Earth radius, so answers agree with
/// [`RedisGeoIndex`](crate::RedisGeoIndex) to the reply's 4 decimals. Searches scan every
/// place (O(n)); Redis scans nine geohash cells. Equal distances are ordered by id (Redis
/// leaves their order open). Clones share the places.
#[derive(Debug, Clone, Default)]
pub struct MemoryGeoIndex {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    places: BTreeMap<String, Point>,
    metadata: HashMap<String, String>,
}

impl MemoryGeoIndex {
    /// An empty index.
    pub fn new() -> MemoryGeoIndex {
        MemoryGeoIndex::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The distance in meters from `c` to `p` if `p` lies in the area, by Redis's rules
/// (`geoWithinShape`).
fn within(c: &Point, p: &Point, area: Area, unit: Unit) -> Option<f64> {
    let m = unit.meters();
    match area {
        Area::Radius(r) => {
            let d = c.distance_to(p);
            (d <= r * m).then_some(d)
        }
        Area::Box { width, height } => {
            if lat_distance(p.latitude, c.latitude) > height * m / 2.0 {
                return None;
            }
            // the east-west extent is measured along the point's own parallel
            let along = Point::new(c.longitude, p.latitude);
            if p.distance_to(&along) > width * m / 2.0 {
                return None;
            }
            Some(c.distance_to(p))
        }
    }
}

#[async_trait]
impl GeoIndex for MemoryGeoIndex {
    async fn add(&self, places: &[Place]) -> Result<u64> {
        check_places(places)?;
        let mut state = self.lock();
        let mut added = 0;
        for p in places {
            let at = p.point.stored().cell_centre();
            if state.places.insert(p.id.clone(), at).is_none() {
                added += 1;
            }
            if let Some(m) = &p.metadata {
                state.metadata.insert(p.id.clone(), m.clone());
            }
        }
        Ok(added)
    }

    async fn remove(&self, ids: &[&str]) -> Result<u64> {
        check_ids(ids)?;
        let mut state = self.lock();
        let mut removed = 0;
        for id in ids {
            state.metadata.remove(*id);
            if state.places.remove(*id).is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn positions(&self, ids: &[&str]) -> Result<Vec<Option<Point>>> {
        check_ids(ids)?;
        let state = self.lock();
        Ok(ids
            .iter()
            .map(|id| state.places.get(*id).copied())
            .collect())
    }

    async fn metadata(&self, ids: &[&str]) -> Result<Vec<Option<String>>> {
        check_ids(ids)?;
        let state = self.lock();
        Ok(ids
            .iter()
            .map(|id| state.metadata.get(*id).cloned())
            .collect())
    }

    async fn distance(&self, a: &str, b: &str, unit: Unit) -> Result<Option<f64>> {
        check_ids(&[a, b])?;
        let state = self.lock();
        Ok(match (state.places.get(a), state.places.get(b)) {
            (Some(p), Some(q)) => Some(reply_distance(p.distance_to(q), unit)),
            _ => None,
        })
    }

    async fn search(&self, search: &Search) -> Result<Vec<Hit>> {
        search.check()?;
        let state = self.lock();
        let centre = match &search.center {
            Center::Point(p) => p.stored(),
            Center::Place(id) => *state
                .places
                .get(id)
                .ok_or_else(|| Error::UnknownPlace(id.clone()))?,
        };
        let mut found: Vec<(f64, &String, &Point)> = state
            .places
            .iter()
            .filter_map(|(id, p)| within(&centre, p, search.area, search.unit).map(|d| (d, id, p)))
            .collect();
        found.sort_by(|a, b| {
            let by_distance = match search.order {
                Order::Nearest => a.0.total_cmp(&b.0),
                Order::Farthest => b.0.total_cmp(&a.0),
            };
            by_distance.then_with(|| a.1.cmp(b.1))
        });
        match search.count {
            Some(n) => found.truncate(n),
            None if found.len() > MAX_BATCH => {
                return Err(Error::InvalidArgument(format!(
                    "more than {MAX_BATCH} places in the area: give the search a count"
                )));
            }
            None => {}
        }
        Ok(found
            .into_iter()
            .map(|(d, id, p)| Hit {
                id: id.clone(),
                distance: reply_distance(d, search.unit),
                point: *p,
                metadata: if search.metadata {
                    state.metadata.get(id).cloned()
                } else {
                    None
                },
            })
            .collect())
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.lock().places.len() as u64)
    }
}
