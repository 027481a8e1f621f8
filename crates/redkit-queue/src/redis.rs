//! The Redis backend: one hash of envelopes, ready lists per priority, sorted sets for
//! delayed jobs, leases, dead and completed jobs; every key of a queue on one hash tag.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use redkit_core::redis::{Value, cmd};
use redkit_core::{Invocation, Key, Keyspace, Pipeline, Redis, Script};

use crate::job::{self, Envelope, unix_ms};
use crate::{
    Enqueued, Error, Event, EventId, EventKind, Fetched, JobId, JobInfo, JobState, Lease, NewJob,
    Prepared, Queue, QueueConfig, Result, Retention, Stats, check_batch, check_duration,
    check_events, check_occurrence, check_offset, check_progress, check_visibility, ms, prepare,
};

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(
                concat!("queue_", $file),
                include_str!(concat!("../lua/", $file, ".lua")),
            )
        });
    };
}

script!(ENQUEUE, "enqueue");
script!(CYCLE, "cycle");
script!(FAIL, "fail");
script!(EXTEND, "extend");
script!(RELEASE, "release");
script!(RETRY_DEAD, "retry_dead");
script!(REMOVE, "remove");
script!(INSPECT, "inspect");
script!(LIST, "list");
script!(PROGRESS, "progress");
script!(OWNER, "owner");

/// Jobs trimmed from the completed or dead set per call.
const TRIM_LIMIT: u32 = 100;

/// The keys of one queue, all `<prefix>:queue:{<name>}:<part>`.
#[derive(Debug)]
struct Keys {
    space: Keyspace,
    name: String,
    seq: Key,
    jobs: Key,
    delayed: Key,
    lease: Key,
    inflight: Key,
    meta: Key,
    signal: Key,
    dead: Key,
    errors: Key,
    events: Key,
    completed: Key,
    results: Key,
    progress: Key,
    uniques: Key,
    removed: Key,
    schedules: Key,
    scheduler: Key,
    ready: [Key; 4],
}

impl Keys {
    fn new(prefix: &str, name: &str) -> Result<Keys> {
        let space = Keyspace::new(prefix)?.child("queue")?;
        let k = |part: &str| space.tagged_child(name, part);
        Ok(Keys {
            seq: k("seq")?,
            jobs: k("jobs")?,
            delayed: k("delayed")?,
            lease: k("lease")?,
            inflight: k("inflight")?,
            meta: k("meta")?,
            signal: k("signal")?,
            dead: k("dead")?,
            errors: k("errors")?,
            events: k("events")?,
            completed: k("completed")?,
            results: k("results")?,
            progress: k("progress")?,
            uniques: k("uniques")?,
            removed: k("removed")?,
            schedules: k("schedules")?,
            scheduler: k("scheduler")?,
            ready: [k("ready:0")?, k("ready:1")?, k("ready:2")?, k("ready:3")?],
            name: name.to_string(),
            space,
        })
    }

    /// A call of `script` on `keys` in order, then (with `ready`) the four ready lists.
    fn call<'s>(&self, script: &'s Script, keys: &[&Key], ready: bool) -> Invocation<'s> {
        let ready: &[Key] = if ready { &self.ready } else { &[] };
        keys.iter()
            .copied()
            .chain(ready)
            .fold(script.call(), |call, k| call.key(k.as_str()))
    }

    fn unique(&self, key: &str) -> Result<Key> {
        Ok(self
            .space
            .tagged_child(&self.name, &format!("unique:{key}"))?)
    }
}

/// A queue on Redis (standalone, sentinel or cluster). Every key of one queue shares its
/// hash tag, so each script is atomic on one slot; queues spread over the cluster.
///
/// Keys `<prefix>:queue:{<name>}:` + `jobs` (hash: id → envelope), `ready:0`..`ready:3`
/// (lists of ids by priority), `delayed` (zset of `<level><id>` by due time), `lease`
/// (zset: id → lease end), `inflight` (hash: id → delivery token), `dead`, `completed`
/// (zsets by time), `errors`, `results` (hashes), `seq`, `meta`, `signal` (wake-up list),
/// `events` (stream), `unique:<key>`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis: Redis,
    keys: Keys,
    config: QueueConfig,
}

fn unexpected(what: &str) -> Error {
    Error::from(redkit_core::Error::unexpected_reply(what.to_string()))
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn bytes(v: Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::from(b)),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// Id, envelope pairs of a reply.
fn pairs(values: impl Iterator<Item = Value>) -> Result<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    let mut it = values;
    while let Some(id) = it.next() {
        let env = it
            .next()
            .and_then(bytes)
            .ok_or_else(|| unexpected("job envelope"))?;
        out.push((text(&id).ok_or_else(|| unexpected("job id"))?, env));
    }
    Ok(out)
}

impl RedisQueue {
    /// A queue named `name` (non-empty, no braces) on `redis`.
    pub fn new(redis: &Redis, name: &str, config: QueueConfig) -> Result<RedisQueue> {
        config.validate(name)?;
        let keys = Keys::new(&config.prefix, name)?;
        if !config.allow_eviction {
            redis.ensure_no_eviction(
                "queue",
                "jobs, their leases and their places in line are lost without a trace",
            )?;
        }
        Ok(RedisQueue {
            inner: Arc::new(Inner {
                redis: redis.clone(),
                keys,
                config,
            }),
        })
    }

    /// The event stream's key (see [`QueueConfig::events`]).
    pub fn events_key(&self) -> &Key {
        &self.inner.keys.events
    }

    /// The hash of job envelopes (for inspection and tests).
    pub fn jobs_key(&self) -> &Key {
        &self.inner.keys.jobs
    }

    /// Completes `done`, sweeps (promotes due jobs, recovers expired leases) and leases up
    /// to `max` jobs, in one script.
    async fn cycle(
        &self,
        done: &[(Lease, Bytes)],
        max: usize,
        visibility: Duration,
        sweep: bool,
    ) -> Result<(Vec<bool>, Fetched)> {
        check_batch("a fetch", max)?;
        check_batch("a completion", done.len())?;
        check_visibility(visibility)?;
        let k = &self.inner.keys;
        let c = &self.inner.config;
        let token = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let mut call = k.call(
            &CYCLE,
            &[
                &k.jobs,
                &k.delayed,
                &k.lease,
                &k.inflight,
                &k.meta,
                &k.signal,
                &k.dead,
                &k.errors,
                &k.events,
            ],
            true,
        );
        call = call
            .key(k.completed.as_str())
            .key(k.results.as_str())
            .key(k.progress.as_str())
            .key(k.uniques.as_str())
            .key(k.removed.as_str());
        let (keep, count, age) = Self::retention(c.completed);
        call = call
            .arg(max)
            .arg(ms(visibility))
            .arg(token.as_str())
            .arg(c.promote_limit)
            .arg(c.recover_limit)
            .arg(c.events)
            .arg(if keep { "1" } else { "0" })
            .arg(count)
            .arg(age)
            .arg(TRIM_LIMIT)
            .arg(if sweep { "1" } else { "0" })
            .arg(self.most_dead());
        for (lease, result) in done {
            // results are stored only when completed jobs are kept
            let result: &[u8] = if keep { result.as_ref() } else { b"" };
            call = call
                .arg(lease.id.as_str())
                .arg(lease.token.as_str())
                .arg(result)
                .arg(lease.unique.as_deref().unwrap_or(""));
        }
        let reply: Vec<Value> = call.invoke(&self.inner.redis).await?;
        let mut it = reply.into_iter();
        let next = it
            .next()
            .as_ref()
            .and_then(int)
            .ok_or_else(|| unexpected("cycle reply"))?;
        let acks = it
            .next()
            .as_ref()
            .and_then(int)
            .ok_or_else(|| unexpected("cycle reply"))?;
        let acked: Vec<bool> = it
            .by_ref()
            .take(usize::try_from(acks).unwrap_or(0))
            .map(|v| int(&v) == Some(1))
            .collect();
        if acked.len() != done.len() {
            return Err(unexpected("cycle reply: completions"));
        }
        let mut fetched = Fetched {
            next_due: u64::try_from(next).ok().map(Duration::from_millis),
            ..Fetched::default()
        };
        for (id, env) in pairs(it)? {
            let id = JobId(id);
            match Envelope::decode(env) {
                Ok(e) => fetched.deliveries.push(e.delivery(id, token.clone())),
                Err(e) => fetched.broken.push((
                    Lease {
                        id,
                        token: token.clone(),
                        unique: None,
                    },
                    e.to_string(),
                )),
            }
        }
        Ok((acked, fetched))
    }

    /// Adds prepared jobs in one script; with a schedule occurrence, only if it was not
    /// fired yet (`None` then).
    async fn add(
        &self,
        prepared: &[Prepared],
        schedule: Option<(&str, u64)>,
    ) -> Result<Option<Vec<Enqueued>>> {
        let k = &self.inner.keys;
        let mut call = k.call(
            &ENQUEUE,
            &[
                &k.seq,
                &k.jobs,
                &k.delayed,
                &k.signal,
                &k.completed,
                &k.dead,
                &k.schedules,
            ],
            true,
        );
        call = call.key(k.uniques.as_str());
        let mut uniques = 0u32;
        for p in prepared {
            if let Some((key, _)) = &p.unique {
                call = call.key(k.unique(key)?.as_str());
            }
        }
        let (name, at) = schedule.unwrap_or(("", 0));
        call = call.arg(prepared.len()).arg(name).arg(at);
        for p in prepared {
            let (index, ttl, key) = match &p.unique {
                Some((key, ttl)) => {
                    uniques += 1;
                    (uniques, *ttl, key.as_str())
                }
                None => (0, 0, ""),
            };
            call = call
                .arg(p.id.as_deref().unwrap_or(""))
                .arg(p.level)
                .arg(p.delay_ms)
                .arg(index)
                .arg(ttl)
                .arg(key)
                .arg(p.envelope.encode());
        }
        let reply: Vec<Value> = call.invoke(&self.inner.redis).await?;
        if reply.is_empty() {
            // the occurrence was fired already
            return Ok(None);
        }
        let mut out = Vec::with_capacity(prepared.len());
        let mut it = reply.iter();
        while let (Some(status), Some(id)) = (it.next(), it.next()) {
            let id = JobId(text(id).ok_or_else(|| unexpected("enqueued id"))?);
            out.push(match int(status) {
                Some(1) => Enqueued::Added(id),
                _ => Enqueued::Duplicate(id),
            });
        }
        if out.len() != prepared.len() {
            return Err(unexpected("enqueue reply length"));
        }
        Ok(Some(out))
    }

    /// The scheduler lease script: held, and the server's time.
    async fn owner(&self, owner: &str, ttl_ms: u64) -> Result<(bool, SystemTime)> {
        let k = &self.inner.keys;
        let (held, now): (i64, u64) = k
            .call(&OWNER, &[&k.scheduler], false)
            .arg(owner)
            .arg(ttl_ms)
            .invoke(&self.inner.redis)
            .await?;
        Ok((held == 1, UNIX_EPOCH + Duration::from_millis(now)))
    }

    /// The dead-set bound the scripts take: -1 keeps none, 0 keeps all.
    fn most_dead(&self) -> i64 {
        match self.inner.config.dead {
            Retention::None => -1,
            Retention::Keep { count, .. } => {
                count.map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    }

    fn retention(r: Retention) -> (bool, u64, u64) {
        match r {
            Retention::None => (false, 0, 0),
            Retention::Keep { count, age } => {
                (true, count.unwrap_or(0), age.map_or(0, |a| ms(a).max(1)))
            }
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    fn name(&self) -> &str {
        &self.inner.keys.name
    }

    fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    async fn enqueue_bytes(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let prepared = prepare(&self.inner.config, &jobs)?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        self.add(&prepared, None)
            .await?
            .ok_or_else(|| unexpected("enqueue reply"))
    }

    async fn fire(&self, schedule: &str, at: SystemTime, job: NewJob) -> Result<Option<Enqueued>> {
        job::check_name("schedule name", schedule)?;
        check_occurrence(at)?;
        let prepared = prepare(&self.inner.config, &[job])?;
        Ok(self
            .add(&prepared, Some((schedule, unix_ms(at))))
            .await?
            .and_then(|mut out| out.pop()))
    }

    async fn last_fired(&self, schedule: &str) -> Result<Option<SystemTime>> {
        let ms: Option<u64> = self
            .inner
            .redis
            .query(
                cmd("HGET")
                    .arg(self.inner.keys.schedules.as_str())
                    .arg(schedule),
            )
            .await?;
        Ok(ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    async fn schedule_lease(&self, owner: &str, ttl: Duration) -> Result<(bool, SystemTime)> {
        let ttl = check_duration("a scheduler lease", ttl)?;
        self.owner(owner, ttl.max(1)).await
    }

    async fn schedule_release(&self, owner: &str) -> Result<()> {
        self.owner(owner, 0).await.map(drop)
    }

    async fn fetch(&self, max: usize, visibility: Duration) -> Result<Fetched> {
        Ok(self.cycle(&[], max, visibility, true).await?.1)
    }

    async fn wait(&self, timeout: Duration) -> Result<()> {
        check_duration("a wait", timeout)?;
        // BLPOP takes seconds with millisecond precision; at least 1 ms (0 would block
        // forever)
        let secs = (timeout.as_secs_f64() * 1000.0).round().max(1.0) / 1000.0;
        let mut conn = self.inner.redis.dedicated().await?;
        let _: Option<(String, String)> = conn
            .blocking(
                cmd("BLPOP").arg(self.inner.keys.signal.as_str()).arg(secs),
                timeout,
            )
            .await?;
        Ok(())
    }

    async fn complete(&self, done: &[(Lease, Bytes)]) -> Result<Vec<bool>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.cycle(done, 0, Duration::from_secs(1), false).await?.0)
    }

    async fn complete_and_fetch(
        &self,
        done: &[(Lease, Bytes)],
        max: usize,
        visibility: Duration,
    ) -> Result<(Vec<bool>, Fetched)> {
        self.cycle(done, max, visibility, true).await
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: Option<Duration>) -> Result<()> {
        let k = &self.inner.keys;
        let c = &self.inner.config;
        let retry = retry
            .map(|d| check_duration("a retry wait", d))
            .transpose()?;
        let call = k.call(
            &FAIL,
            &[
                &k.jobs,
                &k.lease,
                &k.inflight,
                &k.delayed,
                &k.dead,
                &k.errors,
                &k.signal,
                &k.events,
            ],
            true,
        );
        let done: i64 = call
            .key(k.uniques.as_str())
            .key(k.progress.as_str())
            .arg(lease.id.as_str())
            .arg(lease.token.as_str())
            .arg(error)
            .arg(if retry.is_some() { "retry" } else { "dead" })
            .arg(retry.unwrap_or(0))
            .arg(self.most_dead())
            .arg(TRIM_LIMIT)
            .arg(c.events)
            .invoke(&self.inner.redis)
            .await?;
        match done {
            1 => Ok(()),
            _ => Err(Error::LeaseLost(lease.id.clone())),
        }
    }

    async fn extend(&self, leases: &[Lease], visibility: Duration) -> Result<Vec<bool>> {
        check_visibility(visibility)?;
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let k = &self.inner.keys;
        let mut call = k
            .call(&EXTEND, &[&k.lease, &k.inflight], false)
            .arg(ms(visibility));
        for l in leases {
            call = call.arg(l.id.as_str()).arg(l.token.as_str());
        }
        let reply: Vec<i64> = call.invoke(&self.inner.redis).await?;
        Ok(reply.into_iter().map(|r| r == 1).collect())
    }

    async fn release(&self, leases: &[Lease]) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let k = &self.inner.keys;
        let mut call = k.call(&RELEASE, &[&k.jobs, &k.lease, &k.inflight, &k.signal], true);
        for l in leases {
            call = call.arg(l.id.as_str()).arg(l.token.as_str());
        }
        Ok(call.invoke(&self.inner.redis).await?)
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobInfo>> {
        let k = &self.inner.keys;
        let reply: Vec<Value> = k
            .call(
                &INSPECT,
                &[
                    &k.jobs,
                    &k.delayed,
                    &k.lease,
                    &k.dead,
                    &k.completed,
                    &k.results,
                    &k.errors,
                    &k.progress,
                ],
                false,
            )
            .arg(id.as_str())
            .invoke(&self.inner.redis)
            .await?;
        let mut it = reply.into_iter();
        let Some(state) = it.next() else {
            return Ok(None);
        };
        let state = match text(&state).as_deref() {
            Some("waiting") => JobState::Waiting,
            Some("delayed") => JobState::Delayed,
            Some("active") => JobState::Active,
            Some("completed") => JobState::Completed,
            Some("failed") => JobState::Failed,
            Some("dead") => JobState::Dead,
            _ => return Err(unexpected("job state")),
        };
        let env = it
            .next()
            .and_then(bytes)
            .ok_or_else(|| unexpected("job envelope"))?;
        let error = it.next().as_ref().and_then(text);
        let result = it.next().and_then(bytes);
        let mut info = Envelope::decode(env)?.info(id.clone(), state, error, result);
        info.progress = it.next().and_then(bytes);
        Ok(Some(info))
    }

    async fn list(&self, state: JobState, offset: usize, limit: usize) -> Result<Vec<JobInfo>> {
        check_batch("a listing", limit)?;
        check_offset(offset)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = &self.inner.keys;
        let name = match state {
            JobState::Waiting => "waiting",
            JobState::Delayed | JobState::Failed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
        };
        let call = k.call(
            &LIST,
            &[&k.jobs, &k.delayed, &k.lease, &k.dead, &k.completed],
            true,
        );
        let reply: Vec<Value> = call
            .arg(name)
            .arg(offset)
            .arg(limit)
            .invoke(&self.inner.redis)
            .await?;
        pairs(reply.into_iter())?
            .into_iter()
            .map(|(id, env)| Ok(Envelope::decode(env)?.info(JobId(id), state, None, None)))
            .collect()
    }

    async fn stats(&self) -> Result<Stats> {
        let k = &self.inner.keys;
        let mut pipe = Pipeline::new();
        for r in &k.ready {
            pipe.cmd(cmd("LLEN").arg(r.as_str()).to_owned());
        }
        for z in [&k.delayed, &k.lease, &k.completed, &k.dead] {
            pipe.cmd(cmd("ZCARD").arg(z.as_str()).to_owned());
        }
        pipe.cmd(cmd("HGET").arg(k.meta.as_str()).arg("paused").to_owned());
        let r: (u64, u64, u64, u64, u64, u64, u64, u64, Option<String>) =
            pipe.query(&self.inner.redis).await?;
        Ok(Stats {
            waiting: r.0 + r.1 + r.2 + r.3,
            delayed: r.4,
            active: r.5,
            completed: r.6,
            dead: r.7,
            paused: r.8.as_deref() == Some("1"),
        })
    }

    async fn pause(&self) -> Result<()> {
        let _: i64 = self
            .inner
            .redis
            .query(
                cmd("HSET")
                    .arg(self.inner.keys.meta.as_str())
                    .arg("paused")
                    .arg("1"),
            )
            .await?;
        Ok(())
    }

    async fn resume(&self) -> Result<()> {
        let k = &self.inner.keys;
        let mut pipe = Pipeline::new();
        pipe.cmd(cmd("HDEL").arg(k.meta.as_str()).arg("paused").to_owned());
        // wake idle workers: they may have slept through the pause
        pipe.cmd(cmd("RPUSH").arg(k.signal.as_str()).arg(1).to_owned());
        pipe.cmd(cmd("LTRIM").arg(k.signal.as_str()).arg(0).arg(0).to_owned());
        let _: Vec<Value> = pipe.query(&self.inner.redis).await?;
        Ok(())
    }

    async fn retry_dead(&self, ids: &[JobId], limit: usize) -> Result<u64> {
        check_batch("a retry", limit.max(ids.len()))?;
        let k = &self.inner.keys;
        let mut call = k.call(
            &RETRY_DEAD,
            &[&k.jobs, &k.dead, &k.errors, &k.signal, &k.progress],
            true,
        );
        call = call
            .key(k.uniques.as_str())
            .arg(if ids.is_empty() { limit } else { ids.len() });
        for id in ids {
            call = call.arg(id.as_str());
        }
        Ok(call.invoke(&self.inner.redis).await?)
    }

    async fn remove(&self, id: &JobId) -> Result<bool> {
        let k = &self.inner.keys;
        let n: i64 = k
            .call(
                &REMOVE,
                &[
                    &k.jobs,
                    &k.delayed,
                    &k.lease,
                    &k.inflight,
                    &k.dead,
                    &k.completed,
                    &k.results,
                    &k.errors,
                    &k.progress,
                    &k.uniques,
                    &k.removed,
                ],
                true,
            )
            .arg(id.as_str())
            .invoke(&self.inner.redis)
            .await?;
        Ok(n == 1)
    }

    async fn progress(&self, lease: &Lease, progress: Bytes) -> Result<()> {
        check_progress(&self.inner.config, &progress)?;
        let k = &self.inner.keys;
        let held: i64 = k
            .call(
                &PROGRESS,
                &[&k.jobs, &k.inflight, &k.progress, &k.events],
                false,
            )
            .arg(lease.id.as_str())
            .arg(lease.token.as_str())
            .arg(progress.as_ref())
            .arg(self.inner.config.events)
            .invoke(&self.inner.redis)
            .await?;
        match held {
            1 => Ok(()),
            _ => Err(Error::LeaseLost(lease.id.clone())),
        }
    }

    async fn events(&self, after: &EventId, max: usize, wait: Duration) -> Result<Vec<Event>> {
        check_events(&self.inner.config, max)?;
        check_duration("an event wait", wait)?;
        let mut read = cmd("XREAD");
        read.arg("COUNT").arg(max);
        let key = self.inner.keys.events.as_str();
        let reply: Value = if wait.is_zero() {
            let read = read.arg("STREAMS").arg(key).arg(after.as_str());
            self.inner.redis.query(read).await?
        } else {
            let block = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            let read = read
                .arg("BLOCK")
                .arg(block)
                .arg("STREAMS")
                .arg(key)
                .arg(after.as_str());
            let mut conn = self.inner.redis.dedicated().await?;
            conn.blocking(read, wait).await?
        };
        read_events(reply)
    }

    async fn last_event_id(&self) -> Result<EventId> {
        check_events(&self.inner.config, 1)?;
        let reply: Value = self
            .inner
            .redis
            .query(
                cmd("XREVRANGE")
                    .arg(self.inner.keys.events.as_str())
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        Ok(stream_entries(&reply)?
            .into_iter()
            .next()
            .map_or_else(EventId::start, |(id, _)| id))
    }
}

/// `[[id, [field, value, ...]], ...]`
fn stream_entries(v: &Value) -> Result<Vec<(EventId, Vec<Value>)>> {
    let Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|e| match e {
            Value::Array(pair) if pair.len() == 2 => {
                let id = text(&pair[0]).ok_or_else(|| unexpected("event id"))?;
                let fields = match &pair[1] {
                    Value::Array(f) => f.clone(),
                    _ => Vec::new(),
                };
                Ok((EventId::parse(&id)?, fields))
            }
            _ => Err(unexpected("stream entry")),
        })
        .collect()
}

/// The events of an `XREAD` reply on one stream (nil when nothing came).
fn read_events(reply: Value) -> Result<Vec<Event>> {
    let entries = match &reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(s)) if s.len() == 2 => stream_entries(&s[1])?,
            None => return Ok(Vec::new()),
            _ => return Err(unexpected("XREAD reply")),
        },
        Value::Map(m) => match m.first() {
            Some((_, e)) => stream_entries(e)?,
            None => return Ok(Vec::new()),
        },
        _ => return Err(unexpected("XREAD reply")),
    };
    entries
        .into_iter()
        .map(|(id, fields)| {
            let (mut kind, mut job, mut detail) = (None, None, Bytes::new());
            let mut it = fields.into_iter();
            while let (Some(name), Some(value)) = (it.next(), it.next()) {
                match text(&name).as_deref() {
                    Some("event") => kind = text(&value).as_deref().and_then(EventKind::from_name),
                    Some("id") => job = text(&value).map(JobId),
                    Some("detail") => detail = bytes(value).unwrap_or_default(),
                    _ => {}
                }
            }
            match (kind, job) {
                (Some(kind), Some(job)) => Ok(Event {
                    id,
                    kind,
                    job,
                    detail,
                }),
                _ => Err(Error::Corrupt(format!("event {id} is not a queue event"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_names_its_keys_and_every_key_shares_the_queue_slot() {
        for s in [
            &*ENQUEUE,
            &*CYCLE,
            &*FAIL,
            &*EXTEND,
            &*RELEASE,
            &*RETRY_DEAD,
            &*REMOVE,
            &*INSPECT,
            &*LIST,
            &*PROGRESS,
            &*OWNER,
        ] {
            assert!(s.code().starts_with("-- KEYS["), "{}", s.name());
        }
        let k = Keys::new("app", "emails").unwrap();
        let mut all = vec![
            k.seq.clone(),
            k.jobs.clone(),
            k.delayed.clone(),
            k.lease.clone(),
            k.inflight.clone(),
            k.meta.clone(),
            k.signal.clone(),
            k.dead.clone(),
            k.errors.clone(),
            k.events.clone(),
            k.completed.clone(),
            k.results.clone(),
            k.progress.clone(),
            k.uniques.clone(),
            k.removed.clone(),
            k.schedules.clone(),
            k.scheduler.clone(),
            k.unique("order:7").unwrap(),
        ];
        all.extend(k.ready.iter().cloned());
        let names: Vec<&str> = all.iter().map(Key::as_str).collect();
        redkit_testkit::assert_same_slot(&names);
        assert_eq!(k.jobs.as_str(), "app:queue:{emails}:jobs");
    }
}
