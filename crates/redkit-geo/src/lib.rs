#![doc = include_str!("../README.md")]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod memory;
mod point;
mod redis;

use std::fmt;

use async_trait::async_trait;

pub use error::{Error, Result};
pub use memory::MemoryGeoIndex;
pub use point::{EARTH_RADIUS_M, MAX_DISTANCE_M, MAX_LATITUDE, MAX_LONGITUDE, Point, Unit};
pub use redis::RedisGeoIndex;

/// The longest place id, in bytes.
pub const MAX_ID_LEN: usize = 1024;
/// The longest place metadata, in bytes.
pub const MAX_METADATA_LEN: usize = 64 * 1024;
/// The most places one call adds, removes or looks up, and the largest search `count`.
pub const MAX_BATCH: usize = 1000;

/// A place to add or move.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub(crate) id: String,
    pub(crate) point: Point,
    pub(crate) metadata: Option<String>,
}

impl Place {
    /// A place at `longitude`, `latitude` (degrees).
    pub fn new(id: impl Into<String>, longitude: f64, latitude: f64) -> Place {
        Place {
            id: id.into(),
            point: Point::new(longitude, latitude),
            metadata: None,
        }
    }

    /// Metadata stored with the place (a name, a JSON blob), returned by searches that ask
    /// for it. Adding a place again without metadata keeps what it had.
    pub fn metadata(mut self, metadata: impl Into<String>) -> Place {
        self.metadata = Some(metadata.into());
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Where a search is centred.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Center {
    /// A point (used as given).
    Point(Point),
    /// A place of the index (at its stored position).
    Place(String),
}

/// The area a search covers.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Area {
    /// Everything within a distance of the centre (inclusive).
    Radius(f64),
    /// A box `width` wide (measured along each point's own parallel, as Redis does) and
    /// `height` high, centred on the centre.
    Box {
        /// East-west extent.
        width: f64,
        /// North-south extent.
        height: f64,
    },
}

/// Nearest or farthest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Order {
    /// Nearest first.
    #[default]
    Nearest,
    /// Farthest first.
    Farthest,
}

/// A search: centre, area, unit, order, count, and whether to return metadata.
///
/// ```
/// use redkit_geo::{Point, Search, Unit};
/// let s = Search::radius(Point::new(2.3522, 48.8566), 5.0, Unit::Kilometers)
///     .count(10)
///     .with_metadata();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub(crate) center: Center,
    pub(crate) area: Area,
    pub(crate) unit: Unit,
    pub(crate) order: Order,
    pub(crate) count: Option<usize>,
    pub(crate) metadata: bool,
}

impl Search {
    /// Places within `radius` of `point`.
    pub fn radius(point: Point, radius: f64, unit: Unit) -> Search {
        Search::new(Center::Point(point), Area::Radius(radius), unit)
    }

    /// Places within `radius` of the place `id`.
    pub fn radius_around(id: impl Into<String>, radius: f64, unit: Unit) -> Search {
        Search::new(Center::Place(id.into()), Area::Radius(radius), unit)
    }

    /// Places in a `width` × `height` box centred on `point`.
    pub fn boxed(point: Point, width: f64, height: f64, unit: Unit) -> Search {
        Search::new(Center::Point(point), Area::Box { width, height }, unit)
    }

    /// Places in a `width` × `height` box centred on the place `id`.
    pub fn boxed_around(id: impl Into<String>, width: f64, height: f64, unit: Unit) -> Search {
        Search::new(Center::Place(id.into()), Area::Box { width, height }, unit)
    }

    /// A search from its parts. Distances in hits are in `unit`.
    pub fn new(center: Center, area: Area, unit: Unit) -> Search {
        Search {
            center,
            area,
            unit,
            order: Order::Nearest,
            count: None,
            metadata: false,
        }
    }

    /// At most `n` hits: the `n` nearest (or farthest). Without it, every hit in the area,
    /// up to [`MAX_BATCH`] (more is an error rather than a silent cut).
    pub fn count(mut self, n: usize) -> Search {
        self.count = Some(n);
        self
    }

    /// Farthest first.
    pub fn farthest_first(mut self) -> Search {
        self.order = Order::Farthest;
        self
    }

    /// Returns each hit's metadata (one more round trip on Redis).
    pub fn with_metadata(mut self) -> Search {
        self.metadata = true;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        match &self.center {
            Center::Point(p) => p.validate()?,
            Center::Place(id) => check_id(id)?,
        }
        match self.area {
            Area::Radius(r) => point::check_length("radius", r)?,
            Area::Box { width, height } => {
                point::check_length("box width", width)?;
                point::check_length("box height", height)?;
            }
        }
        if let Some(n) = self.count
            && (n == 0 || n > MAX_BATCH)
        {
            return Err(Error::InvalidArgument(format!(
                "a count of {n} is outside 1..={MAX_BATCH}"
            )));
        }
        Ok(())
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Hit {
    /// The place's id.
    pub id: String,
    /// Its distance from the centre in the search's unit, rounded to 4 decimals as Redis
    /// replies it.
    pub distance: f64,
    /// Its stored position (the centre of its geohash cell: within 0.3 m of what was added).
    pub point: Point,
    /// Its metadata, when the search asked for it and the place has some.
    pub metadata: Option<String>,
}

/// A set of places searchable by distance.
///
/// Object safe: `Arc<dyn GeoIndex>` works.
#[async_trait]
pub trait GeoIndex: Send + Sync + fmt::Debug {
    /// Adds or moves places, with their metadata, in one atomic step. Returns how many
    /// were new.
    async fn add(&self, places: &[Place]) -> Result<u64>;

    /// Removes places with their metadata. Returns how many were there.
    async fn remove(&self, ids: &[&str]) -> Result<u64>;

    /// The stored positions of places (`None` for unknown ids).
    async fn positions(&self, ids: &[&str]) -> Result<Vec<Option<Point>>>;

    /// The metadata of places (`None` for unknown ids and places without any).
    async fn metadata(&self, ids: &[&str]) -> Result<Vec<Option<String>>>;

    /// The distance between two places in `unit` (4 decimals), `None` if either is unknown.
    async fn distance(&self, a: &str, b: &str, unit: Unit) -> Result<Option<f64>>;

    /// Places in an area, nearest (or farthest) first.
    async fn search(&self, search: &Search) -> Result<Vec<Hit>>;

    /// How many places the index holds.
    async fn count(&self) -> Result<u64>;

    /// One place's stored position.
    async fn position(&self, id: &str) -> Result<Option<Point>> {
        Ok(self.positions(&[id]).await?.pop().flatten())
    }

    /// The `k` places nearest to `center`, searched within a radius that starts at
    /// `start_radius` meters and grows fourfold until `k` are found or the whole globe is
    /// covered: cheap in dense areas, never incomplete. A start radius below 1 m starts at
    /// 1 m (the answer is the same: a search returns the nearest `k` within its radius),
    /// so at most 13 searches run; above the half circumference it is the whole globe.
    async fn nearest(&self, center: Center, k: usize, start_radius: f64) -> Result<Vec<Hit>> {
        point::check_length("start radius", start_radius)?;
        let mut radius = start_radius.clamp(1.0, MAX_DISTANCE_M);
        loop {
            let search = Search::new(center.clone(), Area::Radius(radius), Unit::Meters).count(k);
            let hits = self.search(&search).await?;
            if hits.len() >= k || radius >= MAX_DISTANCE_M {
                return Ok(hits);
            }
            // slightly past half the circumference, so the last round covers the antipode
            radius = (radius * 4.0).min(MAX_DISTANCE_M + 1.0);
        }
    }
}

pub(crate) fn check_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidPlace("a place id is empty".into()));
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::InvalidPlace(format!(
            "a place id of {} bytes is over the limit of {MAX_ID_LEN}",
            id.len()
        )));
    }
    Ok(())
}

pub(crate) fn check_ids(ids: &[&str]) -> Result<()> {
    check_batch(ids.len())?;
    ids.iter().try_for_each(|id| check_id(id))
}

pub(crate) fn check_batch(len: usize) -> Result<()> {
    if len > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "{len} places in one call is over the limit of {MAX_BATCH}"
        )));
    }
    Ok(())
}

pub(crate) fn check_places(places: &[Place]) -> Result<()> {
    check_batch(places.len())?;
    for p in places {
        check_id(&p.id)?;
        p.point.validate().map_err(|e| match e {
            Error::InvalidCoordinates(m) => {
                Error::InvalidCoordinates(format!("place `{}`: {m}", p.id))
            }
            other => other,
        })?;
        if let Some(m) = &p.metadata
            && m.len() > MAX_METADATA_LEN
        {
            return Err(Error::InvalidPlace(format!(
                "metadata of {} bytes for `{}` is over the limit of {MAX_METADATA_LEN}",
                m.len(),
                p.id
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName(format!("the {what} is empty")));
    }
    if name.contains(['{', '}']) {
        return Err(Error::InvalidName(format!(
            "the {what} `{name}` contains `{{` or `}}`, which would change its hash slot"
        )));
    }
    if name.len() > 256 {
        return Err(Error::InvalidName(format!(
            "the {what} is {} bytes, over the limit of 256",
            name.len()
        )));
    }
    Ok(())
}
