//! The Redis backend: a geo sorted set plus a metadata hash on one hash tag; searches are
//! plain `GEOSEARCH` commands.

use std::fmt;
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use redkit_core::redis::{Cmd, Value, cmd};
use redkit_core::{Key, Redis, Script};

use crate::{
    Area, Center, Error, GeoIndex, Hit, MAX_BATCH, Order, Place, Point, Result, Search, Unit,
    check_ids, check_name, check_places,
};

static ADD: LazyLock<Script> = LazyLock::new(|| Script::new("add", include_str!("../lua/add.lua")));
static REMOVE: LazyLock<Script> =
    LazyLock::new(|| Script::new("remove", include_str!("../lua/remove.lua")));

/// A [`GeoIndex`] on Redis.
///
/// Keys: `<prefix>:geo:{<name>}` (the geo sorted set) and `<prefix>:geo:{<name>}:meta`
/// (metadata), on one cluster slot. Searches are `GEOSEARCH ... WITHDIST WITHCOORD` with
/// an explicit order; metadata, when asked for, is one `HMGET` more.
#[derive(Clone)]
pub struct RedisGeoIndex {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    key: Key,
    meta: Key,
}

impl fmt::Debug for RedisGeoIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisGeoIndex")
            .field("key", &self.inner.key.as_str())
            .finish()
    }
}

impl RedisGeoIndex {
    /// The index `name` under the key prefix `redkit`.
    pub fn new(redis: &Redis, name: &str) -> Result<RedisGeoIndex> {
        RedisGeoIndex::with_prefix(redis, "redkit", name)
    }

    /// The index `name` under the key prefix `prefix`.
    pub fn with_prefix(redis: &Redis, prefix: &str, name: &str) -> Result<RedisGeoIndex> {
        check_name("key prefix", prefix)?;
        check_name("index name", name)?;
        let key = redis.keyspace(prefix)?.child("geo")?.tagged(name)?;
        let meta = key.child("meta")?;
        Ok(RedisGeoIndex {
            inner: Arc::new(Inner {
                redis: redis.clone(),
                key,
                meta,
            }),
        })
    }

    /// The geo sorted set's key (for raw commands on the same data).
    pub fn key(&self) -> &str {
        self.inner.key.as_str()
    }

    /// The `GEOSEARCH` command of a search, asking for one hit more than it may return
    /// when it has no count (to tell a full area from one cut short).
    fn geosearch(&self, s: &Search) -> Cmd {
        let mut c = cmd("GEOSEARCH");
        c.arg(self.inner.key.as_str());
        match &s.center {
            Center::Point(p) => {
                let p = p.stored();
                c.arg("FROMLONLAT").arg(p.longitude).arg(p.latitude)
            }
            Center::Place(id) => c.arg("FROMMEMBER").arg(id.as_str()),
        };
        match s.area {
            Area::Radius(r) => c.arg("BYRADIUS").arg(r),
            Area::Box { width, height } => c.arg("BYBOX").arg(width).arg(height),
        };
        c.arg(s.unit.code());
        c.arg(match s.order {
            Order::Nearest => "ASC",
            Order::Farthest => "DESC",
        });
        c.arg("COUNT").arg(s.count.unwrap_or(MAX_BATCH + 1));
        c.arg("WITHDIST").arg("WITHCOORD");
        c
    }
}

fn unexpected(what: impl Into<String>) -> Error {
    Error::Store(redkit_core::Error::unexpected_reply(what))
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => {
            String::from_utf8(b.clone()).map_err(|_| unexpected("a place id is not UTF-8"))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(unexpected(format!("expected a string, got {other:?}"))),
    }
}

fn number(v: &Value) -> Result<f64> {
    match v {
        Value::Double(d) => Ok(*d),
        other => text(other)?
            .parse()
            .map_err(|_| unexpected(format!("expected a number, got {other:?}"))),
    }
}

fn point(v: &Value) -> Result<Option<Point>> {
    match v {
        Value::Nil => Ok(None),
        Value::Array(c) if c.len() == 2 => Ok(Some(Point::new(number(&c[0])?, number(&c[1])?))),
        other => Err(unexpected(format!("expected coordinates, got {other:?}"))),
    }
}

fn unknown_place(e: &redkit_core::Error) -> bool {
    e.to_string()
        .contains("could not decode requested zset member")
}

#[async_trait]
impl GeoIndex for RedisGeoIndex {
    async fn add(&self, places: &[Place]) -> Result<u64> {
        check_places(places)?;
        if places.is_empty() {
            return Ok(0);
        }
        let mut call = ADD
            .call()
            .key(self.inner.key.as_str())
            .key(self.inner.meta.as_str());
        for p in places {
            let at = p.point.stored();
            call = call.arg(at.longitude).arg(at.latitude).arg(p.id.as_str());
            call = match &p.metadata {
                Some(m) => call.arg(format!("+{m}")),
                None => call.arg("-"),
            };
        }
        Ok(call.invoke(&self.inner.redis).await?)
    }

    async fn remove(&self, ids: &[&str]) -> Result<u64> {
        check_ids(ids)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut call = REMOVE
            .call()
            .key(self.inner.key.as_str())
            .key(self.inner.meta.as_str());
        for id in ids {
            call = call.arg(*id);
        }
        Ok(call.invoke(&self.inner.redis).await?)
    }

    async fn positions(&self, ids: &[&str]) -> Result<Vec<Option<Point>>> {
        check_ids(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = cmd("GEOPOS");
        c.arg(self.inner.key.as_str());
        for id in ids {
            c.arg(*id);
        }
        let v: Vec<Value> = self.inner.redis.query(&c).await?;
        v.iter().map(point).collect()
    }

    async fn metadata(&self, ids: &[&str]) -> Result<Vec<Option<String>>> {
        check_ids(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = cmd("HMGET");
        c.arg(self.inner.meta.as_str());
        for id in ids {
            c.arg(*id);
        }
        Ok(self.inner.redis.query(&c).await?)
    }

    async fn distance(&self, a: &str, b: &str, unit: Unit) -> Result<Option<f64>> {
        check_ids(&[a, b])?;
        let d: Option<f64> = self
            .inner
            .redis
            .query(
                cmd("GEODIST")
                    .arg(self.inner.key.as_str())
                    .arg(a)
                    .arg(b)
                    .arg(unit.code()),
            )
            .await?;
        Ok(d)
    }

    async fn search(&self, search: &Search) -> Result<Vec<Hit>> {
        search.check()?;
        let reply: Vec<Value> = match self.inner.redis.query(&self.geosearch(search)).await {
            Ok(v) => v,
            Err(e) if unknown_place(&e) => {
                let Center::Place(id) = &search.center else {
                    return Err(e.into());
                };
                return Err(Error::UnknownPlace(id.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        if search.count.is_none() && reply.len() > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "more than {MAX_BATCH} places in the area: give the search a count"
            )));
        }
        let mut hits = reply
            .iter()
            .map(|item| match item {
                Value::Array(f) if f.len() == 3 => Ok(Hit {
                    id: text(&f[0])?,
                    distance: number(&f[1])?,
                    point: point(&f[2])?.ok_or_else(|| unexpected("a hit without coordinates"))?,
                    metadata: None,
                }),
                other => Err(unexpected(format!("GEOSEARCH replied {other:?}"))),
            })
            .collect::<Result<Vec<Hit>>>()?;
        if search.metadata && !hits.is_empty() {
            let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
            let meta = self.metadata(&ids).await?;
            for (h, m) in hits.iter_mut().zip(meta) {
                h.metadata = m;
            }
        }
        Ok(hits)
    }

    async fn count(&self) -> Result<u64> {
        Ok(self
            .inner
            .redis
            .query(cmd("ZCARD").arg(self.inner.key.as_str()))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_and_its_metadata_share_one_slot() {
        let key = redkit_core::Keyspace::new("app")
            .unwrap()
            .child("geo")
            .unwrap()
            .tagged("drivers")
            .unwrap();
        redkit_testkit::assert_same_slot(&[key.as_str(), key.child("meta").unwrap().as_str()]);
        for script in [&*ADD, &*REMOVE] {
            assert!(script.code().starts_with("-- KEYS[1]"), "{}", script.name());
        }
    }

    /// No script makes a key name (rule: every key in KEYS): these scripts need no string
    /// concatenation at all, so any `..` outside a comment fails.
    #[test]
    fn no_script_builds_a_key_name() {
        redkit_testkit::assert_no_lua_concatenation(concat!(env!("CARGO_MANIFEST_DIR"), "/lua"), 2);
    }
}
