//! The Redis backend.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redkit_core::redis::{Cmd, Value, cmd};
use redkit_core::{Keyspace, Pipeline, Redis, Script};

use crate::{
    Claimed, ConsumerInfo, Delivery, Entry, Error, Fields, GroupInfo, MAX_BATCH, Pending,
    PendingSummary, Result, StartFrom, StreamStore, Trim, check_bound, check_count, check_duration,
    check_given_id, check_id, check_ids, check_name, check_trim, dead_letter_fields,
};

static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new("claim", include_str!("../lua/claim.lua")));
static READ_OWN: LazyLock<Script> =
    LazyLock::new(|| Script::new("read_own", include_str!("../lua/read_own.lua")));
static KEEP_ALIVE: LazyLock<Script> =
    LazyLock::new(|| Script::new("keep_alive", include_str!("../lua/keep_alive.lua")));
static ACK_OWNED: LazyLock<Script> =
    LazyLock::new(|| Script::new("ack_owned", include_str!("../lua/ack_owned.lua")));
static DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new("dead_letter", include_str!("../lua/dead_letter.lua")));
static REMOVE_IDLE: LazyLock<Script> =
    LazyLock::new(|| Script::new("remove_idle", include_str!("../lua/remove_idle.lua")));

/// Dead-letter streams keep about this many entries.
const DEAD_LETTER_MAX: u64 = 100_000;

/// A [`StreamStore`] on Redis Streams.
///
/// Keys: `<prefix>:stream:{<name>}` per stream and `<prefix>:stream:{<name>}:dead` for
/// its dead letters (one hash tag, so one cluster slot). Blocking reads take a dedicated
/// connection from the pool, with a response timeout above the block time.
#[derive(Clone)]
pub struct RedisStreamStore {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    ns: Keyspace,
}

impl fmt::Debug for RedisStreamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamStore")
            .field("prefix", &self.inner.ns.prefix())
            .finish()
    }
}

fn unexpected(what: impl Into<String>) -> Error {
    Error::Store(redkit_core::Error::unexpected_reply(what))
}

fn text(v: &Value) -> Result<String> {
    match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        other => Err(unexpected(format!("expected a string, got {other:?}"))),
    }
}

fn int(v: &Value) -> Result<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).map_err(|_| unexpected("a negative count")),
        other => text(other)?
            .parse()
            .map_err(|_| unexpected(format!("expected an integer, got {other:?}"))),
    }
}

fn fields(v: &Value) -> Result<Fields> {
    let Value::Array(items) = v else {
        return Err(unexpected(format!("expected fields, got {v:?}")));
    };
    items
        .chunks(2)
        .map(|p| match p {
            [k, v] => Ok((text(k)?, text(v)?)),
            _ => Err(unexpected("an odd field list")),
        })
        .collect()
}

/// `[[id, fields-or-nil], ...]`
fn entries(v: &Value) -> Result<Vec<(String, Option<Fields>)>> {
    let Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|e| match e {
            Value::Array(pair) if pair.len() == 2 => Ok((
                text(&pair[0])?,
                match &pair[1] {
                    Value::Nil => None,
                    f => Some(fields(f)?),
                },
            )),
            other => Err(unexpected(format!("a stream entry {other:?}"))),
        })
        .collect()
}

/// The entries of an `XREADGROUP` reply for one stream (nil when nothing came).
fn read_reply(v: &Value) -> Result<Vec<(String, Option<Fields>)>> {
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(s)) if s.len() == 2 => entries(&s[1]),
            None => Ok(Vec::new()),
            other => Err(unexpected(format!("XREADGROUP replied {other:?}"))),
        },
        Value::Map(m) => match m.first() {
            Some((_, e)) => entries(e),
            None => Ok(Vec::new()),
        },
        other => Err(unexpected(format!("XREADGROUP replied {other:?}"))),
    }
}

/// `[cursor, id, deliveries, fields, ...]` from the claim and read_own scripts.
fn claimed(reply: &[Value]) -> Result<Claimed> {
    let Some((next, triples)) = reply.split_first() else {
        return Err(unexpected("an empty claim reply"));
    };
    let deliveries = triples
        .chunks(3)
        .map(|t| match t {
            [id, n, f] => Ok(Delivery {
                entry: Entry {
                    id: text(id)?,
                    fields: fields(f)?,
                },
                deliveries: int(n)?,
            }),
            _ => Err(unexpected("a claim reply of odd length")),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Claimed {
        deliveries,
        cursor: text(next)?,
    })
}

/// `XADD key [MAXLEN|MINID ~ n] id field value ...`
fn xadd(key: &str, trim: Option<&Trim>, id: &str, fields: &Fields) -> Cmd {
    let mut c = cmd("XADD");
    c.arg(key);
    match trim {
        Some(Trim::MaxLen(n)) => c.arg("MAXLEN").arg("~").arg(*n),
        Some(Trim::MinId(min)) => c.arg("MINID").arg("~").arg(min.as_str()),
        None => &mut c,
    };
    c.arg(id);
    for (k, v) in fields {
        c.arg(k.as_str()).arg(v.as_str());
    }
    c
}

/// Pairs of a flat or RESP3 map reply.
fn map(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|p| match p {
                [k, v] => Some((text(k).ok()?, v)),
                _ => None,
            })
            .collect(),
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((text(k).ok()?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

impl RedisStreamStore {
    /// A store over `redis` with keys under `<prefix>:stream:`.
    pub fn new(redis: &Redis, prefix: &str) -> Result<RedisStreamStore> {
        check_name("key prefix", prefix)?;
        Ok(RedisStreamStore {
            inner: Arc::new(Inner {
                redis: redis.clone(),
                ns: redis.keyspace(prefix)?.child("stream")?,
            }),
        })
    }

    /// The key of a stream (for raw commands on the same data).
    pub fn key(&self, stream: &str) -> Result<String> {
        check_name("stream", stream)?;
        Ok(self.inner.ns.tagged(stream)?.into_string())
    }

    fn dead_key(&self, stream: &str) -> Result<String> {
        Ok(format!("{}:dead", self.key(stream)?))
    }

    fn no_group(e: &redkit_core::Error, stream: &str, group: &str) -> Option<Error> {
        e.to_string().contains("NOGROUP").then(|| Error::NoGroup {
            stream: stream.to_string(),
            group: group.to_string(),
        })
    }

    /// Runs a script that acts on the ids `consumer` holds and returns the others.
    async fn owned_ids(
        &self,
        script: &Script,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>> {
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        let ids = check_ids(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = script
            .call()
            .key(self.key(stream)?)
            .arg(group)
            .arg(consumer);
        for id in &ids {
            call = call.arg(id.as_str());
        }
        call.invoke(&self.inner.redis)
            .await
            .map_err(|e| Self::no_group(&e, stream, group).unwrap_or_else(|| e.into()))
    }

    async fn query<T: redkit_core::redis::FromRedisValue>(
        &self,
        c: &Cmd,
        stream: &str,
        group: &str,
    ) -> Result<T> {
        self.inner
            .redis
            .query(c)
            .await
            .map_err(|e| Self::no_group(&e, stream, group).unwrap_or_else(|| e.into()))
    }
}

#[async_trait]
impl StreamStore for RedisStreamStore {
    async fn append(
        &self,
        stream: &str,
        entries: &[Fields],
        trim: Option<Trim>,
    ) -> Result<Vec<String>> {
        let key = self.key(stream)?;
        check_trim(trim.as_ref())?;
        if entries.len() > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "{} entries in one append is over the limit of {MAX_BATCH}",
                entries.len()
            )));
        }
        let mut pipe = Pipeline::new();
        for fields in entries {
            if fields.is_empty() {
                return Err(Error::InvalidArgument(
                    "an entry needs at least one field".into(),
                ));
            }
            pipe.cmd(xadd(&key, trim.as_ref(), "*", fields));
        }
        match pipe.query(&self.inner.redis).await {
            Ok(ids) => Ok(ids),
            // the entries before the refused one were appended (a pipeline of XADDs)
            Err(e) if e.to_string().contains("exhausted the last possible ID") => Err(
                Error::InvalidArgument("the stream has exhausted the last possible id".into()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    async fn append_with_id(
        &self,
        stream: &str,
        id: &str,
        fields: &Fields,
        trim: Option<Trim>,
    ) -> Result<String> {
        if fields.is_empty() {
            return Err(Error::InvalidArgument(
                "an entry needs at least one field".into(),
            ));
        }
        check_given_id(id)?;
        check_trim(trim.as_ref())?;
        let c = xadd(&self.key(stream)?, trim.as_ref(), id, fields);
        match self.inner.redis.query::<String>(&c).await {
            Ok(id) => Ok(id),
            Err(e)
                if e.to_string().contains("ID specified in XADD")
                    || e.to_string().contains("Invalid stream ID")
                    || e.to_string().contains("exhausted the last possible ID") =>
            {
                Err(Error::InvalidArgument(format!(
                    "the id `{id}` is malformed or not above the stream's last id"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn create_group(&self, stream: &str, group: &str, start: StartFrom) -> Result<bool> {
        check_name("group", group)?;
        let start = match start {
            StartFrom::Beginning => "0".to_string(),
            StartFrom::End => "$".to_string(),
            StartFrom::After(id) => {
                check_id("start id", &id)?;
                id
            }
        };
        let c = cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key(stream)?)
            .arg(group)
            .arg(start)
            .arg("MKSTREAM")
            .to_owned();
        match self.inner.redis.query::<()>(&c).await {
            Ok(()) => Ok(true),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>> {
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        check_count(count)?;
        let block_ms = block.map(|b| check_duration("block", b)).transpose()?;
        let mut c = cmd("XREADGROUP");
        c.arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(ms) = block_ms {
            c.arg("BLOCK").arg(ms.max(1));
        }
        c.arg("STREAMS").arg(self.key(stream)?).arg(">");
        let reply: Value = match block {
            Some(b) => {
                let mut conn = self.inner.redis.dedicated().await?;
                conn.blocking(&c, b)
                    .await
                    .map_err(|e| Self::no_group(&e, stream, group).unwrap_or_else(|| e.into()))?
            }
            None => self.query(&c, stream, group).await?,
        };
        read_reply(&reply)?
            .into_iter()
            .map(|(id, f)| {
                Ok(Delivery {
                    entry: Entry {
                        id,
                        fields: f.unwrap_or_default(),
                    },
                    deliveries: 1,
                })
            })
            .collect()
    }

    async fn read_own_pending(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        after: &str,
        count: usize,
    ) -> Result<Claimed> {
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        check_count(count)?;
        check_id("cursor", after)?;
        let reply: Vec<Value> = READ_OWN
            .call()
            .key(self.key(stream)?)
            .arg(group)
            .arg(consumer)
            .arg(after)
            .arg(count)
            .invoke(&self.inner.redis)
            .await
            .map_err(|e| Self::no_group(&e, stream, group).unwrap_or_else(|| e.into()))?;
        claimed(&reply)
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> Result<u64> {
        check_name("group", group)?;
        let ids = check_ids(ids)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut c = cmd("XACK");
        c.arg(self.key(stream)?).arg(group);
        for id in &ids {
            c.arg(id.as_str());
        }
        self.query(&c, stream, group).await
    }

    async fn ack_owned(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>> {
        self.owned_ids(&ACK_OWNED, stream, group, consumer, ids)
            .await
    }

    async fn claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        cursor: &str,
    ) -> Result<Claimed> {
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        check_count(count)?;
        let min_idle = check_duration("claim idle time", min_idle)?;
        check_id("cursor", cursor)?;
        let reply: Vec<Value> = CLAIM
            .call()
            .key(self.key(stream)?)
            .arg(group)
            .arg(consumer)
            .arg(min_idle)
            .arg(count)
            .arg(cursor)
            .invoke(&self.inner.redis)
            .await
            .map_err(|e| Self::no_group(&e, stream, group).unwrap_or_else(|| e.into()))?;
        claimed(&reply)
    }

    async fn keep_alive(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>> {
        self.owned_ids(&KEEP_ALIVE, stream, group, consumer, ids)
            .await
    }

    async fn dead_letter(
        &self,
        stream: &str,
        group: &str,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<String> {
        check_name("group", group)?;
        check_id("entry id", &delivery.entry.id)?;
        let mut call = DEAD_LETTER
            .call()
            .key(self.key(stream)?)
            .key(self.dead_key(stream)?)
            .arg(group)
            .arg(delivery.entry.id.as_str())
            .arg(delivery.deliveries)
            .arg(reason)
            .arg(DEAD_LETTER_MAX);
        for (k, v) in dead_letter_fields(&delivery.entry.fields)?.iter() {
            call = call.arg(k.as_str()).arg(v.as_str());
        }
        Ok(call.invoke(&self.inner.redis).await?)
    }

    async fn pending_summary(&self, stream: &str, group: &str) -> Result<PendingSummary> {
        check_name("group", group)?;
        let c = cmd("XPENDING").arg(self.key(stream)?).arg(group).to_owned();
        let v: Vec<Value> = self.query(&c, stream, group).await?;
        let opt = |v: Option<&Value>| v.filter(|v| !matches!(v, Value::Nil)).map(text).transpose();
        let consumers = match v.get(3) {
            Some(Value::Array(cs)) => cs
                .iter()
                .map(|c| match c {
                    Value::Array(p) if p.len() == 2 => Ok((text(&p[0])?, int(&p[1])?)),
                    other => Err(unexpected(format!("a pending consumer {other:?}"))),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        Ok(PendingSummary {
            count: v.first().map(int).transpose()?.unwrap_or(0),
            first: opt(v.get(1))?,
            last: opt(v.get(2))?,
            consumers,
        })
    }

    async fn pending(&self, stream: &str, group: &str, count: usize) -> Result<Vec<Pending>> {
        check_name("group", group)?;
        check_count(count)?;
        let c = cmd("XPENDING")
            .arg(self.key(stream)?)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(count)
            .to_owned();
        let v: Vec<Vec<Value>> = self.query(&c, stream, group).await?;
        v.iter()
            .map(|p| match p.as_slice() {
                [id, consumer, idle, n] => Ok(Pending {
                    id: text(id)?,
                    consumer: text(consumer)?,
                    idle: Duration::from_millis(int(idle)?),
                    deliveries: int(n)?,
                }),
                _ => Err(unexpected("a pending entry")),
            })
            .collect()
    }

    async fn groups(&self, stream: &str) -> Result<Vec<GroupInfo>> {
        let c = cmd("XINFO").arg("GROUPS").arg(self.key(stream)?).to_owned();
        let v: Vec<Value> = match self.inner.redis.query(&c).await {
            Ok(v) => v,
            Err(e) if e.to_string().contains("no such key") => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        v.iter()
            .map(|g| {
                let m = map(g);
                let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
                Ok(GroupInfo {
                    name: get("name").map(text).transpose()?.unwrap_or_default(),
                    consumers: get("consumers").map(int).transpose()?.unwrap_or(0),
                    pending: get("pending").map(int).transpose()?.unwrap_or(0),
                    last_delivered: get("last-delivered-id")
                        .map(text)
                        .transpose()?
                        .unwrap_or_default(),
                    lag: get("lag")
                        .filter(|v| !matches!(v, Value::Nil))
                        .map(int)
                        .transpose()?,
                })
            })
            .collect()
    }

    async fn consumers(&self, stream: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        check_name("group", group)?;
        let c = cmd("XINFO")
            .arg("CONSUMERS")
            .arg(self.key(stream)?)
            .arg(group)
            .to_owned();
        let v: Vec<Value> = self.query(&c, stream, group).await?;
        v.iter()
            .map(|c| {
                let m = map(c);
                let get = |k: &str| m.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
                Ok(ConsumerInfo {
                    name: get("name").map(text).transpose()?.unwrap_or_default(),
                    pending: get("pending").map(int).transpose()?.unwrap_or(0),
                    idle: Duration::from_millis(get("idle").map(int).transpose()?.unwrap_or(0)),
                })
            })
            .collect()
    }

    async fn remove_idle_consumers(
        &self,
        stream: &str,
        group: &str,
        idle: Duration,
    ) -> Result<Vec<String>> {
        check_name("group", group)?;
        let idle = check_duration("consumer idle time", idle)?;
        REMOVE_IDLE
            .call()
            .key(self.key(stream)?)
            .arg(group)
            .arg(idle)
            .invoke(&self.inner.redis)
            .await
            .map_err(|e| Self::no_group(&e, stream, group).unwrap_or_else(|| e.into()))
    }

    async fn range(&self, stream: &str, from: &str, to: &str, count: usize) -> Result<Vec<Entry>> {
        check_count(count)?;
        check_bound("range start", from)?;
        check_bound("range end", to)?;
        let c = cmd("XRANGE")
            .arg(self.key(stream)?)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(count)
            .to_owned();
        let v: Value = self.inner.redis.query(&c).await?;
        entries(&v)?
            .into_iter()
            .map(|(id, f)| {
                Ok(Entry {
                    id,
                    fields: f.unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn dead_letters(&self, stream: &str, count: usize) -> Result<Vec<Entry>> {
        check_count(count)?;
        let c = cmd("XRANGE")
            .arg(self.dead_key(stream)?)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .to_owned();
        let v: Value = self.inner.redis.query(&c).await?;
        entries(&v)?
            .into_iter()
            .map(|(id, f)| {
                Ok(Entry {
                    id,
                    fields: f.unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn len(&self, stream: &str) -> Result<u64> {
        Ok(self
            .inner
            .redis
            .query(cmd("XLEN").arg(self.key(stream)?))
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_and_its_dead_letters_share_one_slot() {
        let key = redkit_core::Keyspace::new("app")
            .unwrap()
            .child("stream")
            .unwrap()
            .tagged("orders")
            .unwrap();
        redkit_testkit::assert_same_slot(&[
            key.as_str().to_string(),
            format!("{}:dead", key.as_str()),
        ]);
        for s in [
            &*CLAIM,
            &*READ_OWN,
            &*KEEP_ALIVE,
            &*ACK_OWNED,
            &*DEAD_LETTER,
            &*REMOVE_IDLE,
        ] {
            assert!(s.code().starts_with("-- KEYS[1]"), "{}", s.name());
        }
    }
}
