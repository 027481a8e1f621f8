//! The in-memory backend: streams, groups and pending lists with Redis's rules.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redkit_core::{Clock, SystemClock};
use tokio::sync::Notify;

use crate::{
    Claimed, ConsumerInfo, Delivery, Entry, Error, Fields, GroupInfo, MAX_BATCH, Pending,
    PendingSummary, Result, StartFrom, StreamStore, Trim, check_bound, check_count, check_duration,
    check_given_id, check_id, check_ids, check_name, check_trim, dead_letter_fields, parse_id,
};

type Id = (u64, u64);

fn fmt_id(id: Id) -> String {
    format!("{}-{}", id.0, id.1)
}

/// A [`StreamStore`] in process memory, for tests and single-process apps. It passes the
/// same conformance suite as [`RedisStreamStore`](crate::RedisStreamStore). Clones share
/// the streams.
#[derive(Clone, Default)]
pub struct MemoryStreamStore {
    state: Arc<Mutex<HashMap<String, Log>>>,
    appended: Arc<Notify>,
}

impl fmt::Debug for MemoryStreamStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStreamStore").finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Log {
    entries: BTreeMap<Id, Fields>,
    last: Id,
    groups: BTreeMap<String, Group>,
    dead: BTreeMap<Id, Fields>,
    dead_last: Id,
}

impl Log {
    /// Trims exactly (Redis's `~` trims whole nodes, so at least as much is kept there).
    fn trim(&mut self, trim: Option<&Trim>) -> Result<()> {
        match trim {
            Some(Trim::MaxLen(n)) => {
                while self.entries.len() as u64 > *n {
                    self.entries.pop_first();
                }
            }
            Some(Trim::MinId(min)) => {
                let min = bound(min, true)?;
                self.entries.retain(|id, _| *id >= min);
            }
            None => {}
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Group {
    last_delivered: Id,
    pending: BTreeMap<Id, Held>,
    consumers: BTreeMap<String, Instant>,
}

#[derive(Debug, Clone)]
struct Held {
    consumer: String,
    since: Instant,
    deliveries: u64,
}

fn now_ms() -> u64 {
    u64::try_from(SystemClock.now().as_millis()).unwrap_or(u64::MAX)
}

/// The id after `id`, if there is one.
fn succ(id: Id) -> Option<Id> {
    match id {
        (ms, seq) if seq < u64::MAX => Some((ms, seq + 1)),
        (ms, _) if ms < u64::MAX => Some((ms + 1, 0)),
        _ => None,
    }
}

/// The id of an entry appended now (`*`); none once the last possible id is taken, as
/// Redis refuses then too.
fn next_id(last: Id) -> Result<Id> {
    let ms = now_ms();
    if ms > last.0 {
        Ok((ms, 0))
    } else {
        succ(last).ok_or_else(|| {
            Error::InvalidArgument("the stream has exhausted the last possible id".into())
        })
    }
}

fn bound(s: &str, low: bool) -> Result<Id> {
    match s {
        "-" => Ok((0, 0)),
        "+" => Ok((u64::MAX, u64::MAX)),
        id => {
            let (ms, seq) = id.split_once('-').map_or((id, None), |(m, s)| (m, Some(s)));
            let ms: u64 = ms
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("`{id}` is not a stream id")))?;
            let seq = match seq {
                Some(s) => s
                    .parse()
                    .map_err(|_| Error::InvalidArgument(format!("`{id}` is not a stream id")))?,
                None if low => 0,
                None => u64::MAX,
            };
            Ok((ms, seq))
        }
    }
}

impl MemoryStreamStore {
    /// An empty store.
    pub fn new() -> MemoryStreamStore {
        MemoryStreamStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Log>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks the names and ids, then runs `act` on each id that `consumer` holds in
    /// `group` (with the stream's entries and the group's pending list) and returns the
    /// ids it does not hold (claimed by another consumer, acknowledged, never held,
    /// unparsable) or that `act` answered `false` for: the memory side of the owner-checked
    /// scripts `ack_owned.lua` and `keep_alive.lua`.
    fn owned_ids(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
        mut act: impl FnMut(&BTreeMap<Id, Fields>, &mut BTreeMap<Id, Held>, Id) -> bool,
    ) -> Result<Vec<String>> {
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        let ids = check_ids(ids)?;
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get_mut(group) else {
                return ids;
            };
            ids.into_iter()
                .filter(|id| {
                    let held = parse_id(id)
                        .filter(|key| g.pending.get(key).is_some_and(|h| h.consumer == consumer));
                    !held.is_some_and(|key| act(&log.entries, &mut g.pending, key))
                })
                .collect()
        })
    }

    fn with_group<R>(
        &self,
        stream: &str,
        group: &str,
        f: impl FnOnce(&mut Log, &str) -> R,
    ) -> Result<R> {
        let mut state = self.lock();
        let log = state
            .get_mut(stream)
            .filter(|l| l.groups.contains_key(group))
            .ok_or_else(|| Error::NoGroup {
                stream: stream.to_string(),
                group: group.to_string(),
            })?;
        Ok(f(log, group))
    }
}

#[async_trait]
impl StreamStore for MemoryStreamStore {
    async fn append(
        &self,
        stream: &str,
        entries: &[Fields],
        trim: Option<Trim>,
    ) -> Result<Vec<String>> {
        check_name("stream", stream)?;
        check_trim(trim.as_ref())?;
        if entries.len() > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "{} entries in one append is over the limit of {MAX_BATCH}",
                entries.len()
            )));
        }
        if entries.iter().any(Vec::is_empty) {
            return Err(Error::InvalidArgument(
                "an entry needs at least one field".into(),
            ));
        }
        let mut state = self.lock();
        let log = state.entry(stream.to_string()).or_default();
        let mut ids = Vec::with_capacity(entries.len());
        for fields in entries {
            // Redis appends the entries before the failing one too (a pipeline of XADDs)
            let id = next_id(log.last)?;
            log.last = id;
            log.entries.insert(id, fields.clone());
            ids.push(fmt_id(id));
            log.trim(trim.as_ref())?;
        }
        drop(state);
        self.appended.notify_waiters();
        Ok(ids)
    }

    async fn append_with_id(
        &self,
        stream: &str,
        id: &str,
        fields: &Fields,
        trim: Option<Trim>,
    ) -> Result<String> {
        check_name("stream", stream)?;
        if fields.is_empty() {
            return Err(Error::InvalidArgument(
                "an entry needs at least one field".into(),
            ));
        }
        check_given_id(id)?;
        check_trim(trim.as_ref())?;
        let bad = || {
            Error::InvalidArgument(format!(
                "the id `{id}` is malformed or not above the stream's last id"
            ))
        };
        let mut state = self.lock();
        let log = state.entry(stream.to_string()).or_default();
        let (ms, seq) = id.split_once('-').ok_or_else(bad)?;
        let ms: u64 = ms.parse().map_err(|_| bad())?;
        let seq = match seq {
            "*" if ms == log.last.0 => log.last.1.checked_add(1).ok_or_else(bad)?,
            "*" => 0,
            s => s.parse().map_err(|_| bad())?,
        };
        let new = (ms, seq);
        if new <= log.last || new == (0, 0) {
            return Err(bad());
        }
        log.last = new;
        log.entries.insert(new, fields.clone());
        log.trim(trim.as_ref())?;
        drop(state);
        self.appended.notify_waiters();
        Ok(fmt_id(new))
    }

    async fn create_group(&self, stream: &str, group: &str, start: StartFrom) -> Result<bool> {
        check_name("stream", stream)?;
        check_name("group", group)?;
        let mut state = self.lock();
        let log = state.entry(stream.to_string()).or_default();
        if log.groups.contains_key(group) {
            return Ok(false);
        }
        let last_delivered = match start {
            StartFrom::Beginning => (0, 0),
            StartFrom::End => log.last,
            StartFrom::After(id) => check_id("start id", &id)?,
        };
        log.groups.insert(
            group.to_string(),
            Group {
                last_delivered,
                ..Group::default()
            },
        );
        Ok(true)
    }

    async fn read_new(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>> {
        check_name("consumer", consumer)?;
        check_count(count)?;
        if let Some(b) = block {
            check_duration("block", b)?;
        }
        // past Instant's range (not on any platform for MAX_DURATION): no deadline
        let until = block.map(|b| Instant::now().checked_add(b));
        loop {
            let notified = self.appended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.with_group(stream, group, |log, group| {
                let Some(g) = log.groups.get_mut(group) else {
                    return Vec::new();
                };
                g.consumers.insert(consumer.to_string(), Instant::now());
                let Some(from) = succ(g.last_delivered) else {
                    return Vec::new();
                };
                let fresh: Vec<(Id, Fields)> = log
                    .entries
                    .range(from..)
                    .take(count)
                    .map(|(id, f)| (*id, f.clone()))
                    .collect();
                for (id, _) in &fresh {
                    g.last_delivered = *id;
                    g.pending.insert(
                        *id,
                        Held {
                            consumer: consumer.to_string(),
                            since: Instant::now(),
                            deliveries: 1,
                        },
                    );
                }
                fresh
                    .into_iter()
                    .map(|(id, fields)| Delivery {
                        entry: Entry {
                            id: fmt_id(id),
                            fields,
                        },
                        deliveries: 1,
                    })
                    .collect()
            })?;
            if !got.is_empty() {
                return Ok(got);
            }
            match until {
                None => return Ok(got),
                Some(None) => notified.await,
                Some(Some(until)) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                        return Ok(Vec::new());
                    }
                }
            }
        }
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
        let after = check_id("cursor", after)?;
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get_mut(group) else {
                return Claimed::default();
            };
            g.consumers.insert(consumer.to_string(), Instant::now());
            let Some(from) = succ(after) else {
                return Claimed {
                    deliveries: Vec::new(),
                    cursor: "0-0".into(),
                };
            };
            // as XREADGROUP from a cursor: the next `count` of its own, deleted ones too
            let read: Vec<Id> = g
                .pending
                .range(from..)
                .filter(|(_, h)| h.consumer == consumer)
                .map(|(id, _)| *id)
                .take(count)
                .collect();
            let mut out = Vec::new();
            for id in &read {
                let Some(fields) = log.entries.get(id) else {
                    g.pending.remove(id);
                    continue;
                };
                if let Some(h) = g.pending.get_mut(id) {
                    h.deliveries = h.deliveries.saturating_add(1);
                    h.since = Instant::now();
                    out.push(Delivery {
                        entry: Entry {
                            id: fmt_id(*id),
                            fields: fields.clone(),
                        },
                        deliveries: h.deliveries,
                    });
                }
            }
            Claimed {
                deliveries: out,
                cursor: match read.last() {
                    Some(last) if read.len() == count => fmt_id(*last),
                    _ => "0-0".into(),
                },
            }
        })
    }

    async fn ack(&self, stream: &str, group: &str, ids: &[String]) -> Result<u64> {
        check_name("group", group)?;
        check_ids(ids)?;
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get_mut(group) else {
                return 0;
            };
            ids.iter()
                .filter_map(|id| parse_id(id))
                .filter(|id| g.pending.remove(id).is_some())
                .count() as u64
        })
    }

    async fn ack_owned(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>> {
        self.owned_ids(stream, group, consumer, ids, |_, pending, key| {
            pending.remove(&key);
            true
        })
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
        check_name("consumer", consumer)?;
        check_count(count)?;
        check_duration("claim idle time", min_idle)?;
        let from = check_id("cursor", cursor)?;
        let deliveries = self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get_mut(group) else {
                return Vec::new();
            };
            g.consumers.insert(consumer.to_string(), Instant::now());
            let idle: Vec<Id> = g
                .pending
                .range(from..)
                .filter(|(_, h)| h.since.elapsed() >= min_idle)
                .map(|(id, _)| *id)
                .collect();
            let mut out = Vec::new();
            for id in idle {
                if out.len() == count {
                    break;
                }
                let Some(fields) = log.entries.get(&id) else {
                    g.pending.remove(&id);
                    continue;
                };
                if let Some(h) = g.pending.get_mut(&id) {
                    h.consumer = consumer.to_string();
                    h.since = Instant::now();
                    h.deliveries = h.deliveries.saturating_add(1);
                    out.push(Delivery {
                        entry: Entry {
                            id: fmt_id(id),
                            fields: fields.clone(),
                        },
                        deliveries: h.deliveries,
                    });
                }
            }
            out
        })?;
        // the whole list is scanned at once: the next claim starts over
        Ok(Claimed {
            deliveries,
            cursor: "0-0".into(),
        })
    }

    async fn keep_alive(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<String>> {
        self.owned_ids(stream, group, consumer, ids, |entries, pending, key| {
            if !entries.contains_key(&key) {
                // deleted from the stream: it leaves the pending list
                pending.remove(&key);
                return false;
            }
            if let Some(h) = pending.get_mut(&key) {
                h.since = Instant::now();
            }
            true
        })
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
        let mut fields = dead_letter_fields(&delivery.entry.fields)?.into_owned();
        self.with_group(stream, group, |log, group| {
            fields.push(("_source_id".into(), delivery.entry.id.clone()));
            fields.push(("_group".into(), group.to_string()));
            fields.push(("_deliveries".into(), delivery.deliveries.to_string()));
            fields.push(("_reason".into(), reason.to_string()));
            let id = next_id(log.dead_last)?;
            log.dead_last = id;
            log.dead.insert(id, fields);
            if let (Some(g), Some(src)) = (log.groups.get_mut(group), parse_id(&delivery.entry.id))
            {
                g.pending.remove(&src);
            }
            Ok(fmt_id(id))
        })?
    }

    async fn pending_summary(&self, stream: &str, group: &str) -> Result<PendingSummary> {
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get(group) else {
                return PendingSummary::default();
            };
            let mut per: BTreeMap<String, u64> = BTreeMap::new();
            for h in g.pending.values() {
                *per.entry(h.consumer.clone()).or_default() += 1;
            }
            PendingSummary {
                count: g.pending.len() as u64,
                first: g.pending.keys().next().map(|id| fmt_id(*id)),
                last: g.pending.keys().next_back().map(|id| fmt_id(*id)),
                consumers: per.into_iter().collect(),
            }
        })
    }

    async fn pending(&self, stream: &str, group: &str, count: usize) -> Result<Vec<Pending>> {
        check_count(count)?;
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get(group) else {
                return Vec::new();
            };
            g.pending
                .iter()
                .take(count)
                .map(|(id, h)| Pending {
                    id: fmt_id(*id),
                    consumer: h.consumer.clone(),
                    idle: h.since.elapsed(),
                    deliveries: h.deliveries,
                })
                .collect()
        })
    }

    async fn groups(&self, stream: &str) -> Result<Vec<GroupInfo>> {
        check_name("stream", stream)?;
        let state = self.lock();
        let Some(log) = state.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(log
            .groups
            .iter()
            .map(|(name, g)| GroupInfo {
                name: name.clone(),
                consumers: g.consumers.len() as u64,
                pending: g.pending.len() as u64,
                last_delivered: fmt_id(g.last_delivered),
                lag: Some(
                    succ(g.last_delivered)
                        .map_or(0, |from| log.entries.range(from..).count() as u64),
                ),
            })
            .collect())
    }

    async fn consumers(&self, stream: &str, group: &str) -> Result<Vec<ConsumerInfo>> {
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get(group) else {
                return Vec::new();
            };
            g.consumers
                .iter()
                .map(|(name, seen)| ConsumerInfo {
                    name: name.clone(),
                    pending: g.pending.values().filter(|h| &h.consumer == name).count() as u64,
                    idle: seen.elapsed(),
                })
                .collect()
        })
    }

    async fn remove_idle_consumers(
        &self,
        stream: &str,
        group: &str,
        idle: Duration,
    ) -> Result<Vec<String>> {
        check_duration("consumer idle time", idle)?;
        self.with_group(stream, group, |log, group| {
            let Some(g) = log.groups.get_mut(group) else {
                return Vec::new();
            };
            let gone: Vec<String> = g
                .consumers
                .iter()
                .filter(|(name, seen)| {
                    seen.elapsed() >= idle && !g.pending.values().any(|h| &h.consumer == *name)
                })
                .map(|(name, _)| name.clone())
                .collect();
            for name in &gone {
                g.consumers.remove(name);
            }
            gone
        })
    }

    async fn range(&self, stream: &str, from: &str, to: &str, count: usize) -> Result<Vec<Entry>> {
        check_name("stream", stream)?;
        check_count(count)?;
        check_bound("range start", from)?;
        check_bound("range end", to)?;
        let (lo, hi) = (bound(from, true)?, bound(to, false)?);
        let state = self.lock();
        let Some(log) = state.get(stream).filter(|_| lo <= hi) else {
            return Ok(Vec::new());
        };
        Ok(log
            .entries
            .range(lo..=hi)
            .take(count)
            .map(|(id, f)| Entry {
                id: fmt_id(*id),
                fields: f.clone(),
            })
            .collect())
    }

    async fn dead_letters(&self, stream: &str, count: usize) -> Result<Vec<Entry>> {
        check_name("stream", stream)?;
        check_count(count)?;
        let state = self.lock();
        Ok(state
            .get(stream)
            .map(|log| {
                log.dead
                    .iter()
                    .take(count)
                    .map(|(id, f)| Entry {
                        id: fmt_id(*id),
                        fields: f.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn len(&self, stream: &str) -> Result<u64> {
        check_name("stream", stream)?;
        Ok(self
            .lock()
            .get(stream)
            .map_or(0, |l| l.entries.len() as u64))
    }
}
