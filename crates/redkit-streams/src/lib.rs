#![doc = include_str!("../README.md")]

#[cfg(feature = "conformance")]
pub mod conformance;
mod consumer;
mod error;
mod memory;
mod redis;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

pub use consumer::{Consumer, ConsumerBuilder, ConsumerHandle, Message, Report};
pub use error::{Error, Result};
pub use memory::MemoryStreamStore;
pub use redis::RedisStreamStore;

/// The field a typed [`Producer`] writes its JSON payload to.
pub const PAYLOAD_FIELD: &str = "p";
/// The most entries one call appends or reads.
pub const MAX_BATCH: usize = 1000;
/// The most ids one [`StreamStore::ack`], [`StreamStore::ack_owned`] or
/// [`StreamStore::keep_alive`] takes (a consumer's concurrency is capped to match).
pub const MAX_IDS: usize = 10_000;
/// The longest duration the API takes: a read's block time, a claim's minimum idle
/// time, the consumer's `block`, `claim_after`, `claim_every` and idle-consumer
/// timeout (365 days). Longer ones are [`Error::InvalidArgument`] before anything is
/// sent, never saturated or wrapped.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// An entry's fields, in order.
pub type Fields = Vec<(String, String)>;

/// A stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// Its id (`<ms>-<seq>`).
    pub id: String,
    /// Its fields.
    pub fields: Fields,
}

impl Entry {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An entry handed to a consumer, with how many times it has been delivered (1 the first
/// time; claims and re-reads count).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The entry.
    pub entry: Entry,
    /// Deliveries so far, this one included.
    pub deliveries: u64,
}

/// What a [`StreamStore::claim`] took, and where the next claim goes on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Claimed {
    /// The claimed entries.
    pub deliveries: Vec<Delivery>,
    /// Where the next scan starts; `"0-0"` when this one reached the end of the list.
    pub cursor: String,
}

/// Where a new group starts reading.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StartFrom {
    /// Every entry still in the stream.
    #[default]
    Beginning,
    /// Only entries added from now on.
    End,
    /// Entries after this id.
    After(String),
}

/// How an append trims the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trim {
    /// Keep about this many entries (`MAXLEN ~`: whole nodes, so a little more).
    MaxLen(u64),
    /// Keep entries with ids at or after this one (`MINID ~`).
    MinId(String),
}

/// The pending entries of a group at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PendingSummary {
    /// Entries delivered and not acknowledged.
    pub count: u64,
    /// The oldest pending id.
    pub first: Option<String>,
    /// The newest pending id.
    pub last: Option<String>,
    /// Pending entries per consumer.
    pub consumers: Vec<(String, u64)>,
}

/// One pending entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pending {
    /// The entry's id.
    pub id: String,
    /// The consumer holding it.
    pub consumer: String,
    /// Since its last delivery.
    pub idle: Duration,
    /// Deliveries so far.
    pub deliveries: u64,
}

/// A group of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Its consumers.
    pub consumers: u64,
    /// Entries delivered and not acknowledged.
    pub pending: u64,
    /// The last id delivered to it.
    pub last_delivered: String,
    /// Entries not yet delivered to it (`None` when Redis cannot tell, e.g. after a
    /// deletion in the range).
    pub lag: Option<u64>,
}

/// A consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// Entries it holds unacknowledged.
    pub pending: u64,
    /// Since it last read or claimed.
    pub idle: Duration,
}

/// What the store does with streams: append, groups, reads, acks, claims, dead letters,
/// inspection. [`Consumer`] runs a handler on top of it.
///
/// Object safe: `Arc<dyn StreamStore>` works. Stream names are names, not keys: the
/// store builds the keys (one hash tag per stream, shared with its dead-letter stream).
#[async_trait]
pub trait StreamStore: Send + Sync + fmt::Debug {
    /// Appends entries in one round trip, trimming as asked. Returns their ids.
    async fn append(
        &self,
        stream: &str,
        entries: &[Fields],
        trim: Option<Trim>,
    ) -> Result<Vec<String>>;

    /// Appends one entry under a given id (`<ms>-<seq>`, or `<ms>-*` for the next
    /// sequence of that millisecond), which must be above the stream's last id.
    async fn append_with_id(
        &self,
        stream: &str,
        id: &str,
        fields: &Fields,
        trim: Option<Trim>,
    ) -> Result<String>;

    /// Creates a group (and the stream if needed). `false` when it already existed.
    async fn create_group(&self, stream: &str, group: &str, start: StartFrom) -> Result<bool>;

    /// Up to `count` entries never delivered to the group, waiting up to `block` for the
    /// first when there are none. They become pending for `consumer`.
    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>>;

    /// Up to `count` entries pending for `consumer` itself with ids above `after`
    /// (`"0-0"`: from the start): a restarted consumer's backlog. Each is counted as a
    /// delivery, and comes with its own count (read for exactly these ids). The returned
    /// cursor is the last id read, or `"0-0"` once the backlog is exhausted: pass it as
    /// the next `after`, so no entry is read (and counted) twice in one pass over the
    /// backlog. Entries deleted from the stream meanwhile are acknowledged and left out.
    async fn read_own_pending(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        after: &str,
        count: usize,
    ) -> Result<Claimed>;

    /// Acknowledges entries, whoever holds them. Returns how many were pending.
    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> Result<u64>;

    /// Acknowledges those of `ids` that `consumer` still holds, atomically; the others
    /// (claimed by another consumer meanwhile, already acknowledged, or deleted) are
    /// left alone and returned. A consumer whose entry was claimed away while its
    /// handler ran must not acknowledge the entry another consumer now runs.
    async fn ack_owned(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>>;

    /// Takes over up to `count` entries that other consumers left pending for at least
    /// `min_idle` (each counted as a delivery), scanning the pending list from `cursor`
    /// (`"0-0"`: the start). One call scans a bounded part of a long pending list: pass
    /// the returned cursor to the next call to go on, so entries deep in the list are
    /// reached too. Entries deleted from the stream meanwhile are dropped from the list.
    async fn claim(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
        cursor: &str,
    ) -> Result<Claimed>;

    /// Keeps entries that `consumer` is still working on from being claimed: resets the
    /// idle time of those it still holds (`XCLAIM ... JUSTID`, which does not count a
    /// delivery), in one atomic step with the ownership check. Entries another consumer
    /// claimed meanwhile are left with it (never taken back), and entries acknowledged
    /// or deleted are skipped. Returns the ids it no longer holds.
    async fn keep_alive(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>>;

    /// Moves a delivery to the stream's dead-letter stream with `reason` and acknowledges
    /// it, atomically. Returns the dead letter's id.
    async fn dead_letter(
        &self,
        stream: &str,
        group: &str,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<String>;

    /// The group's pending entries at a glance.
    async fn pending_summary(&self, stream: &str, group: &str) -> Result<PendingSummary>;

    /// Up to `count` pending entries, oldest first.
    async fn pending(&self, stream: &str, group: &str, count: usize) -> Result<Vec<Pending>>;

    /// The stream's groups.
    async fn groups(&self, stream: &str) -> Result<Vec<GroupInfo>>;

    /// A group's consumers.
    async fn consumers(&self, stream: &str, group: &str) -> Result<Vec<ConsumerInfo>>;

    /// Removes consumers idle for at least `idle` that hold nothing pending (removing a
    /// consumer drops its pending entries, so ones that hold any are kept). Returns their
    /// names.
    async fn remove_idle_consumers(
        &self,
        stream: &str,
        group: &str,
        idle: Duration,
    ) -> Result<Vec<String>>;

    /// Up to `count` entries with ids in `[from, to]` (`-` and `+` for the ends): replay.
    async fn range(&self, stream: &str, from: &str, to: &str, count: usize) -> Result<Vec<Entry>>;

    /// Entries in the dead-letter stream of `stream`, oldest first.
    async fn dead_letters(&self, stream: &str, count: usize) -> Result<Vec<Entry>>;

    /// How many entries the stream holds.
    async fn len(&self, stream: &str) -> Result<u64>;
}

/// A typed producer: serializes `T` as JSON into the [`PAYLOAD_FIELD`] of each entry.
#[derive(Debug, Clone)]
pub struct Producer<T> {
    store: std::sync::Arc<dyn StreamStore>,
    stream: String,
    trim: Option<Trim>,
    _t: std::marker::PhantomData<fn(T)>,
}

impl<T: serde::Serialize + Send + Sync> Producer<T> {
    /// A producer appending to `stream`.
    pub fn new(store: std::sync::Arc<dyn StreamStore>, stream: impl Into<String>) -> Self {
        Producer {
            store,
            stream: stream.into(),
            trim: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Trims the stream on every append.
    pub fn trim(mut self, trim: Trim) -> Self {
        self.trim = Some(trim);
        self
    }

    /// Appends one payload. Returns its id.
    pub async fn send(&self, payload: &T) -> Result<String> {
        let mut ids = self.send_batch(std::slice::from_ref(payload)).await?;
        ids.pop()
            .ok_or_else(|| Error::Store(redkit_core::Error::unexpected_reply("no id")))
    }

    /// Appends one payload under a given id (see [`StreamStore::append_with_id`]).
    pub async fn send_with_id(&self, id: &str, payload: &T) -> Result<String> {
        let json = serde_json::to_string(payload).map_err(|e| Error::Encode(e.to_string()))?;
        self.store
            .append_with_id(
                &self.stream,
                id,
                &vec![(PAYLOAD_FIELD.to_string(), json)],
                self.trim.clone(),
            )
            .await
    }

    /// Appends payloads in one round trip. Returns their ids.
    pub async fn send_batch(&self, payloads: &[T]) -> Result<Vec<String>> {
        let entries = payloads
            .iter()
            .map(|p| {
                serde_json::to_string(p)
                    .map(|json| vec![(PAYLOAD_FIELD.to_string(), json)])
                    .map_err(|e| Error::Encode(e.to_string()))
            })
            .collect::<Result<Vec<Fields>>>()?;
        self.store
            .append(&self.stream, &entries, self.trim.clone())
            .await
    }
}

/// The id from which a replay covers everything added at or after `at`: use it as the
/// `from` of [`StreamStore::range`] (entry ids start with their UNIX milliseconds).
pub fn id_at(at: std::time::SystemTime) -> String {
    let ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms}-0")
}

/// A dead letter carries at most this many of its entry's fields as fields of its own;
/// an entry with more has them all in one `_fields` value instead, a JSON array of
/// `[name, value]` pairs (a script cannot pass more than about 8000 values to one
/// command, so such an entry could not be dead-lettered otherwise).
pub const DEAD_LETTER_FIELDS: usize = 1000;

/// The fields a dead letter copies from its entry (see [`DEAD_LETTER_FIELDS`]).
pub(crate) fn dead_letter_fields(fields: &Fields) -> Result<std::borrow::Cow<'_, Fields>> {
    if fields.len() <= DEAD_LETTER_FIELDS {
        return Ok(std::borrow::Cow::Borrowed(fields));
    }
    let json = serde_json::to_string(fields).map_err(|e| Error::Encode(e.to_string()))?;
    Ok(std::borrow::Cow::Owned(vec![("_fields".to_string(), json)]))
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 256 {
        return Err(Error::InvalidName(format!(
            "a {what} name must be 1 to 256 bytes, not {}",
            name.len()
        )));
    }
    if name.contains(['{', '}']) {
        return Err(Error::InvalidName(format!(
            "the {what} name `{name}` contains `{{` or `}}`, which would change its hash slot"
        )));
    }
    Ok(())
}

pub(crate) fn check_count(count: usize) -> Result<()> {
    if count == 0 || count > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "a count of {count} is outside 1..={MAX_BATCH}"
        )));
    }
    Ok(())
}

/// Redis's ordering of entry ids: `<ms>-<seq>`, or `<ms>` for `<ms>-0`, both decimal
/// without sign.
pub(crate) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some((num(ms)?, num(seq)?))
}

/// An entry id argument, checked before it is sent.
pub(crate) fn check_id(what: &str, id: &str) -> Result<(u64, u64)> {
    parse_id(id).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the {what} `{id}` is not a stream id (`<ms>-<seq>`)"
        ))
    })
}

/// Ids to acknowledge or keep alive: at most [`MAX_IDS`], each well formed. Returned in
/// Redis's `<ms>-<seq>` form.
pub(crate) fn check_ids(ids: &[String]) -> Result<Vec<String>> {
    if ids.len() > MAX_IDS {
        return Err(Error::InvalidArgument(format!(
            "{} ids in one call is over the limit of {MAX_IDS}",
            ids.len()
        )));
    }
    ids.iter()
        .map(|id| check_id("entry id", id).map(|(ms, seq)| format!("{ms}-{seq}")))
        .collect()
}

/// A duration argument in whole milliseconds for Redis: rounded up (a sub-millisecond
/// remainder never shortens a wait or an idle time), at most [`MAX_DURATION`].
pub(crate) fn check_duration(what: &str, d: Duration) -> Result<u64> {
    if d > MAX_DURATION {
        return Err(Error::InvalidArgument(format!(
            "a {what} of {d:?} is over the limit of {MAX_DURATION:?}"
        )));
    }
    let ms = d.as_millis() + u128::from(!d.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).map_err(|_| Error::InvalidArgument(format!("a {what} of {d:?}")))
}

/// A trim, checked before the entry is written: `MaxLen` in `1..=i64::MAX` (0 would
/// trim the entry being appended; Redis takes a signed 64-bit length), `MinId` a
/// well-formed id.
/// An id for `append_with_id`: `<ms>-<seq>` or `<ms>-*`, decimal, nothing else (Redis
/// would also take `*` and a bare `<ms>`, the memory store did not).
pub(crate) fn check_given_id(id: &str) -> Result<()> {
    let ok = id.split_once('-').is_some_and(|(ms, seq)| {
        parse_id(&format!("{ms}-0")).is_some()
            && (seq == "*" || parse_id(&format!("0-{seq}")).is_some())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "the id `{id}` is not `<ms>-<seq>` or `<ms>-*`"
        )))
    }
}

pub(crate) fn check_trim(trim: Option<&Trim>) -> Result<()> {
    match trim {
        Some(Trim::MaxLen(n)) if *n == 0 || *n > i64::MAX as u64 => Err(Error::InvalidArgument(
            format!("a MaxLen of {n} is outside 1..={}", i64::MAX),
        )),
        Some(Trim::MinId(id)) => check_id("MinId", id).map(|_| ()),
        _ => Ok(()),
    }
}

/// A range bound of [`StreamStore::range`]: `-`, `+` or an id.
pub(crate) fn check_bound(what: &str, b: &str) -> Result<()> {
    if b == "-" || b == "+" {
        return Ok(());
    }
    check_id(what, b).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_milliseconds_and_stop_at_the_limit() {
        let ms = |d| check_duration("test", d).unwrap();
        assert_eq!(ms(Duration::ZERO), 0);
        assert_eq!(ms(Duration::from_nanos(1)), 1, "never down to zero");
        assert_eq!(ms(Duration::from_micros(999)), 1);
        assert_eq!(ms(Duration::from_millis(1)), 1);
        assert_eq!(ms(Duration::from_millis(1) + Duration::from_nanos(1)), 2);
        assert_eq!(ms(MAX_DURATION), 365 * 24 * 60 * 60 * 1000);
        for d in [MAX_DURATION + Duration::from_nanos(1), Duration::MAX] {
            assert!(matches!(
                check_duration("test", d),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn ids_are_decimal_pairs() {
        assert_eq!(parse_id("5"), Some((5, 0)));
        assert_eq!(parse_id("5-7"), Some((5, 7)));
        assert_eq!(
            parse_id("18446744073709551615-18446744073709551615"),
            Some((u64::MAX, u64::MAX))
        );
        for bad in [
            "",
            "-",
            "+1",
            "1-+2",
            "1-",
            "-1",
            "18446744073709551616-0",
            "1-2-3",
            "a",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
        assert_eq!(check_ids(&["5".into()]).unwrap(), ["5-0"]);
    }
}
