//! Points, units, and Redis's own geo arithmetic (`src/geohash.c`, `src/geohash_helper.c`),
//! so the memory index answers like the server.

use crate::{Error, Result};

/// The Earth's radius Redis uses, in meters.
pub const EARTH_RADIUS_M: f64 = 6_372_797.560856;
/// The northernmost (and, negated, southernmost) latitude Redis can index.
pub const MAX_LATITUDE: f64 = 85.051_128_78;
/// The largest longitude magnitude.
pub const MAX_LONGITUDE: f64 = 180.0;
/// Half the Earth's circumference at [`EARTH_RADIUS_M`]: no two points are farther apart.
pub const MAX_DISTANCE_M: f64 = std::f64::consts::PI * EARTH_RADIUS_M;

const STEP: i32 = 26;
/// How far inside the upper limits an edge coordinate is stored (about 0.1 mm).
const EDGE_NUDGE: f64 = 1e-9;

/// A position in degrees (WGS 84 as Redis reads it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Longitude, −180 to 180.
    pub longitude: f64,
    /// Latitude, −85.05112878 to 85.05112878.
    pub latitude: f64,
}

impl Point {
    /// A point; see [`Point::validate`] for the accepted range.
    pub fn new(longitude: f64, latitude: f64) -> Point {
        Point {
            longitude,
            latitude,
        }
    }

    /// Checks that Redis can index the point.
    pub fn validate(&self) -> Result<()> {
        let Point {
            longitude,
            latitude,
        } = *self;
        if !(-MAX_LONGITUDE..=MAX_LONGITUDE).contains(&longitude) {
            return Err(Error::InvalidCoordinates(format!(
                "longitude {longitude} is outside [-180, 180]"
            )));
        }
        if !(-MAX_LATITUDE..=MAX_LATITUDE).contains(&latitude) {
            return Err(Error::InvalidCoordinates(format!(
                "latitude {latitude} is outside [-85.05112878, 85.05112878] (Web Mercator, which \
                 Redis indexes, ends there)"
            )));
        }
        Ok(())
    }

    /// The point as stored or searched from: Redis encodes longitude 180 and latitude
    /// 85.05112878 exactly one cell past its grid, where `GEOSEARCH` neither finds places
    /// nor searches well from, so those edges are moved 1e-9° (0.1 mm) inside.
    pub(crate) fn stored(self) -> Point {
        let nudge = |v: f64, max: f64| if v >= max { max - EDGE_NUDGE } else { v };
        Point {
            longitude: nudge(self.longitude, MAX_LONGITUDE),
            latitude: nudge(self.latitude, MAX_LATITUDE),
        }
    }

    /// Where Redis reports a stored point: the centre of its 52-bit geohash cell.
    pub(crate) fn cell_centre(self) -> Point {
        let cells = f64::from(1u32 << STEP);
        let cell = |v: f64, min: f64, max: f64| -> f64 {
            // geohashEncode: the offset scaled to 2^26 cells, truncated to an integer
            (((v - min) / (max - min)) * cells) as u32 as f64
        };
        let centre = |i: f64, min: f64, max: f64| -> f64 {
            // geohashDecode + decodeToLongLat: the cell's bounds, their midpoint, clamped
            let scale = max - min;
            let lo = min + (i / cells) * scale;
            let hi = min + ((i + 1.0) / cells) * scale;
            ((lo + hi) / 2.0).clamp(min, max)
        };
        let lon = cell(self.longitude, -MAX_LONGITUDE, MAX_LONGITUDE);
        let lat = cell(self.latitude, -MAX_LATITUDE, MAX_LATITUDE);
        Point {
            longitude: centre(lon, -MAX_LONGITUDE, MAX_LONGITUDE),
            latitude: centre(lat, -MAX_LATITUDE, MAX_LATITUDE),
        }
    }

    /// The great-circle distance in meters, computed as Redis does (`geohashGetDistance`).
    pub fn distance_to(&self, other: &Point) -> f64 {
        let lon1 = self.longitude.to_radians();
        let lon2 = other.longitude.to_radians();
        let v = ((lon2 - lon1) / 2.0).sin();
        if v == 0.0 {
            return lat_distance(self.latitude, other.latitude);
        }
        let lat1 = self.latitude.to_radians();
        let lat2 = other.latitude.to_radians();
        let u = ((lat2 - lat1) / 2.0).sin();
        let a = u * u + lat1.cos() * lat2.cos() * v * v;
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }
}

/// Redis's `geohashGetLatDistance`.
pub(crate) fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_M * (lat2.to_radians() - lat1.to_radians()).abs()
}

/// A distance unit, with Redis's conversion factors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Unit {
    /// Meters.
    #[default]
    Meters,
    /// Kilometers.
    Kilometers,
    /// Miles (1,609.34 m, as Redis has it).
    Miles,
    /// Feet (0.3048 m).
    Feet,
}

impl Unit {
    /// Meters per unit.
    pub fn meters(self) -> f64 {
        match self {
            Unit::Meters => 1.0,
            Unit::Kilometers => 1000.0,
            Unit::Miles => 1609.34,
            Unit::Feet => 0.3048,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Unit::Meters => "m",
            Unit::Kilometers => "km",
            Unit::Miles => "mi",
            Unit::Feet => "ft",
        }
    }
}

/// A distance as Redis replies it: in `unit`, rounded to 4 decimals.
pub(crate) fn reply_distance(meters: f64, unit: Unit) -> f64 {
    ((meters / unit.meters()) * 1e4).round_ties_even() / 1e4
}

/// Checks a search dimension: positive and finite.
pub(crate) fn check_length(what: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "the {what} must be positive and finite, not {v}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_centres_match_what_redis_reports() {
        // GEOADD 13.361389 38.115556 -> GEOPOS 13.36138933897018433 38.11555639549629859
        let p = Point::new(13.361389, 38.115556).cell_centre();
        assert_eq!(p.longitude, 13.361_389_338_970_184);
        assert_eq!(p.latitude, 38.115_556_395_496_3);
    }

    #[test]
    fn distances_match_redis() {
        // GEODIST Sicily Palermo Catania = 166274.1516 m on the decoded points
        let a = Point::new(13.361389, 38.115556).cell_centre();
        let b = Point::new(15.087269, 37.502669).cell_centre();
        assert_eq!(
            reply_distance(a.distance_to(&b), Unit::Meters),
            166_274.151_6
        );
        assert_eq!(
            reply_distance(a.distance_to(&b), Unit::Kilometers),
            166.2742
        );
        // same meridian: the latitude-only branch
        let c = Point::new(10.0, 0.0);
        let d = Point::new(10.0, 1.0);
        assert_eq!(c.distance_to(&d), EARTH_RADIUS_M * 1f64.to_radians());
    }

    #[test]
    fn edges_are_moved_inside_the_grid() {
        let p = Point::new(180.0, MAX_LATITUDE).stored();
        assert!(p.longitude < 180.0 && 180.0 - p.longitude < 1e-8);
        assert!(p.latitude < MAX_LATITUDE);
        let c = p.cell_centre();
        assert!((c.longitude - 180.0).abs() < 3e-6, "{c:?}");
        let low = Point::new(-180.0, -MAX_LATITUDE);
        assert_eq!(low.stored(), low);
        assert!(Point::new(180.000001, 0.0).validate().is_err());
        assert!(Point::new(0.0, -85.06).validate().is_err());
        assert!(Point::new(f64::NAN, 0.0).validate().is_err());
    }
}
