#![doc = include_str!("../README.md")]

mod config;
mod error;
mod event;
mod job;
mod memory;
mod redis;
mod schedule;
mod worker;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;

pub use crate::config::{MAX_BATCH, QueueConfig, Retention};
pub use crate::error::{Error, Result};
pub use crate::event::{Event, EventId, EventKind, EventStream, StartAt};
pub use crate::job::{
    Backoff, Delivery, Enqueued, JobId, JobInfo, JobOptions, JobState, Lease, MAX_ID_LEN, NewJob,
    Priority, Stats, Unique,
};
pub use crate::memory::MemoryQueue;
pub use crate::redis::RedisQueue;
pub use crate::schedule::{
    Missed, Repeat, Schedule, Scheduler, SchedulerBuilder, SchedulerHandle, occurrence_of,
};
pub use crate::worker::{Job, Report, Worker, WorkerBuilder, WorkerHandle};
pub use bytes;

use crate::job::{Envelope, unix_ms};

/// The longest delay, retry wait, lease, wait, unique-key lifetime, retention age or
/// schedule interval a queue takes: 100 years of 365 days. Longer ones are
/// [`Error::InvalidArgument`] (or [`Error::InvalidConfig`] in options), never a silent cut.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The longest run timeout or backoff wait a job stores: `u32::MAX` milliseconds (about
/// 49.7 days). Longer ones are [`Error::InvalidArgument`] (or [`Error::InvalidConfig`]
/// in [`QueueConfig`]).
pub const MAX_JOB_WAIT: Duration = Duration::from_millis(u32::MAX as u64);

/// The largest listing offset, and the longest event stream ([`QueueConfig::events`]):
/// 2^53, the largest integer Lua numbers hold exactly.
pub const MAX_COUNT: u64 = 1 << 53;

/// What one fetch handed out.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Fetched {
    /// The leased jobs, highest priority first.
    pub deliveries: Vec<Delivery>,
    /// Leased jobs whose stored data is not a job: fail them to the dead set.
    pub broken: Vec<(Lease, String)>,
    /// How long until the next delayed job is due or a lease runs out (`None`: nothing
    /// scheduled): an idle worker need not wait longer.
    pub next_due: Option<Duration>,
}

/// A job queue at the byte level; object safe (`Arc<dyn Queue>`). The typed API is
/// [`QueueExt`]; [`Worker`] runs handlers over any queue.
///
/// Delivery is at least once: a job runs until a worker completes it under a live lease,
/// or it runs out of attempts. Every call that ends a delivery carries its [`Lease`]: a
/// worker whose lease ran out (and whose job went to another worker) gets
/// [`Error::LeaseLost`] and changes nothing.
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug {
    /// The queue's name.
    fn name(&self) -> &str;

    /// The queue's options (job defaults for workers).
    fn config(&self) -> &QueueConfig;

    /// Enqueues jobs (at most [`MAX_BATCH`]) in one round trip; all are checked before any
    /// is added, and the batch is added whole or not at all (on Redis one script that
    /// checks every key and decides every job before its first write). Returns, in
    /// order, each job's id or the id of the live job it duplicates.
    ///
    /// A future dropped before it resolves (or an `Err` from the store, such as a
    /// timeout) leaves the batch added or not — never half of it — and the caller cannot
    /// tell which: enqueue is at least once. Give jobs custom ids ([`JobOptions::id`])
    /// to retry such a call without adding them twice.
    async fn enqueue_bytes(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>>;

    /// Leases up to `max` ready jobs (at most [`MAX_BATCH`]) until `visibility` from now.
    /// Also moves due delayed jobs to ready and jobs whose lease ran out back to ready
    /// (an attempt counted), a bounded number per call.
    async fn fetch(&self, max: usize, visibility: Duration) -> Result<Fetched>;

    /// Waits until jobs may be ready (a wake-up from an enqueue, retry or hand-back) or
    /// `timeout` passes. A wake-up is a hint: fetch after every return.
    async fn wait(&self, timeout: Duration) -> Result<()>;

    /// Completes jobs with their results (kept with completed-job retention). Per job:
    /// true, or false when its lease was lost.
    async fn complete(&self, done: &[(Lease, Bytes)]) -> Result<Vec<bool>>;

    /// Completes jobs and leases the next ones in one step (one round trip on Redis):
    /// what a worker does between two batches. Per completion true, or false when its
    /// lease was lost.
    async fn complete_and_fetch(
        &self,
        done: &[(Lease, Bytes)],
        max: usize,
        visibility: Duration,
    ) -> Result<(Vec<bool>, Fetched)> {
        let acked = self.complete(done).await?;
        Ok((acked, self.fetch(max, visibility).await?))
    }

    /// Records a failed run: retried after `retry` (`Some(Duration::ZERO)`: at once) or,
    /// with `None`, dead. [`Error::LeaseLost`] when the lease was lost.
    async fn fail(&self, lease: &Lease, error: &str, retry: Option<Duration>) -> Result<()>;

    /// Extends leases to `visibility` from now. Per lease: true, or false when lost.
    async fn extend(&self, leases: &[Lease], visibility: Duration) -> Result<Vec<bool>>;

    /// Hands leased jobs back unrun (to the head of their ready list, no attempt counted);
    /// how many were still held.
    async fn release(&self, leases: &[Lease]) -> Result<u64>;

    /// One job's state, payload, attempts, last error and result.
    async fn job(&self, id: &JobId) -> Result<Option<JobInfo>>;

    /// A page of one state's jobs (at most [`MAX_BATCH`]), oldest first; `Failed` lists the
    /// delayed set. Errors and results are left out (see [`Queue::job`]).
    async fn list(&self, state: JobState, offset: usize, limit: usize) -> Result<Vec<JobInfo>>;

    /// Jobs per state.
    async fn stats(&self) -> Result<Stats>;

    /// Stops handing out jobs (enqueues and running jobs go on).
    async fn pause(&self) -> Result<()>;

    /// Hands out jobs again.
    async fn resume(&self) -> Result<()>;

    /// Moves dead jobs back to ready with fresh attempts: the given ones, or with none
    /// given up to `limit` of the oldest. How many moved.
    async fn retry_dead(&self, ids: &[JobId], limit: usize) -> Result<u64>;

    /// Removes a job in any state; whether it existed. A worker running it can no longer
    /// complete it.
    async fn remove(&self, id: &JobId) -> Result<bool>;

    /// Records a running job's progress (at most `max_payload` bytes): kept with the job
    /// until it is deleted (see [`JobInfo::progress`]) and recorded as a
    /// [`EventKind::Progress`] event. [`Error::LeaseLost`] when the lease was lost.
    async fn progress(&self, lease: &Lease, progress: Bytes) -> Result<()>;

    /// Up to `max` events (1 to [`MAX_BATCH`]) recorded after `after`, oldest first;
    /// when there is none yet, waits up to `wait` for one. [`Error::InvalidConfig`] when
    /// the queue records no events ([`QueueConfig::events`]). [`EventStream`] reads them
    /// as a `Stream`.
    async fn events(&self, after: &EventId, max: usize, wait: Duration) -> Result<Vec<Event>>;

    /// The id of the newest event kept ([`EventId::start`] when there is none).
    async fn last_event_id(&self) -> Result<EventId>;

    /// Enqueues the occurrence at `at` of the repeatable job `schedule`, due at `at`, if
    /// it is later than the last occurrence fired for it (recorded in the same atomic
    /// step): an occurrence is enqueued once, however many schedulers fire it. `None`
    /// when it (or a later one) was fired already. [`Scheduler`] calls it.
    async fn fire(&self, schedule: &str, at: SystemTime, job: NewJob) -> Result<Option<Enqueued>>;

    /// The last occurrence fired for `schedule`.
    async fn last_fired(&self, schedule: &str) -> Result<Option<SystemTime>>;

    /// Takes or keeps the queue's scheduler lease for `owner` for `ttl`: whether `owner`
    /// holds it, and the queue's time (the server's on Redis).
    async fn schedule_lease(&self, owner: &str, ttl: Duration) -> Result<(bool, SystemTime)>;

    /// Gives the scheduler lease back if `owner` holds it.
    async fn schedule_release(&self, owner: &str) -> Result<()>;
}

/// The typed API over any [`Queue`]: payloads are JSON through serde.
#[async_trait]
pub trait QueueExt: Queue {
    /// Enqueues one job.
    async fn enqueue<T: Serialize + Sync>(
        &self,
        payload: &T,
        options: &JobOptions,
    ) -> Result<Enqueued> {
        let bytes = serde_json::to_vec(payload).map_err(|e| Error::Codec(e.to_string()))?;
        let mut out = self
            .enqueue_bytes(vec![NewJob::new(bytes, options.clone())])
            .await?;
        out.pop()
            .ok_or_else(|| Error::Corrupt("the enqueue reply was empty".into()))
    }

    /// Enqueues several jobs with the same options in one round trip per
    /// [`MAX_BATCH`] jobs. Every payload is encoded and checked before the first chunk
    /// is sent, so bad input adds nothing; each chunk is added whole or not at all, in
    /// order: an `Err` from the store after the first chunk means the chunks before it
    /// were added (give the jobs custom ids to retry the call without duplicates).
    async fn enqueue_many<T: Serialize + Sync>(
        &self,
        payloads: &[T],
        options: &JobOptions,
    ) -> Result<Vec<Enqueued>> {
        let jobs = payloads
            .iter()
            .map(|p| {
                let bytes = serde_json::to_vec(p).map_err(|e| Error::Codec(e.to_string()))?;
                Ok(NewJob::new(bytes, options.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        if jobs.len() > MAX_BATCH {
            // the options once, every payload's size: what `prepare` checks per chunk
            prepare(self.config(), &jobs[..1])?;
            for job in &jobs {
                check_payload(self.config(), &job.payload)?;
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        let mut jobs = jobs.into_iter();
        loop {
            let chunk: Vec<NewJob> = jobs.by_ref().take(MAX_BATCH).collect();
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend(self.enqueue_bytes(chunk).await?);
        }
    }
}

impl<Q: Queue + ?Sized> QueueExt for Q {}

/// A job checked and encoded for a backend.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) id: Option<String>,
    pub(crate) level: u8,
    pub(crate) delay_ms: u64,
    /// The unique key and its lifetime in ms (0: until the job finishes).
    pub(crate) unique: Option<(String, u64)>,
    pub(crate) envelope: Envelope,
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks a batch of jobs against the queue's limits and encodes them.
pub(crate) fn prepare(config: &QueueConfig, jobs: &[NewJob]) -> Result<Vec<Prepared>> {
    if jobs.len() > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "{} jobs in one call, over the limit of {MAX_BATCH}",
            jobs.len()
        )));
    }
    let now = SystemTime::now();
    jobs.iter()
        .map(|job| {
            let o = &job.options;
            check_payload(config, &job.payload)?;
            let id =
                o.id.as_ref()
                    .map(|id| JobId::custom(id.clone()))
                    .transpose()?;
            let attempts = o.max_attempts.unwrap_or(config.max_attempts);
            if attempts == 0 || attempts > u32::from(u16::MAX) {
                return Err(Error::InvalidArgument(format!(
                    "max_attempts must be in 1..=65535, got {attempts}"
                )));
            }
            let jitter = o.jitter.unwrap_or(config.jitter);
            if !(0.0..=1.0).contains(&jitter) {
                return Err(Error::InvalidArgument(format!(
                    "jitter must be in [0, 1], got {jitter}"
                )));
            }
            let timeout = o.timeout.or(config.timeout);
            check_timeout(timeout).map_err(Error::InvalidArgument)?;
            let backoff = o.backoff.unwrap_or(config.backoff);
            check_backoff(backoff).map_err(Error::InvalidArgument)?;
            let mut delay = o.delay.unwrap_or(Duration::ZERO);
            if let Some(at) = o.run_at {
                // a time already past runs now
                delay = delay.max(at.duration_since(now).unwrap_or(Duration::ZERO));
            }
            let delay_ms = check_duration("a delay", delay)?;
            let unique = match &o.unique {
                None => None,
                Some(u) => {
                    job::check_name("unique key", u.key())?;
                    match u {
                        Unique::For(_, ttl) if ttl.as_millis() == 0 => {
                            return Err(Error::InvalidArgument(
                                "a unique key's lifetime must be at least 1 ms".into(),
                            ));
                        }
                        Unique::For(k, ttl) => {
                            Some((k.clone(), check_duration("a unique key's lifetime", *ttl)?))
                        }
                        _ => Some((u.key().to_string(), 0)),
                    }
                }
            };
            let envelope = Envelope {
                attempts: 0,
                stalls: 0,
                max_attempts: u16::try_from(attempts).unwrap_or(u16::MAX),
                priority: o.priority,
                enqueued_ms: unix_ms(now),
                timeout_ms: timeout.map_or(0, |t| {
                    u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
                }),
                backoff,
                jitter_pct: (jitter * 100.0).round() as u8,
                unique: unique
                    .as_ref()
                    .map(|(k, ttl)| (if *ttl == 0 { 1 } else { 2 }, k.clone())),
                payload: job.payload.clone(),
            };
            Ok(Prepared {
                id: id.map(|i| i.0),
                level: o.priority.level(),
                delay_ms,
                unique,
                envelope,
            })
        })
        .collect()
}

/// Checks a payload's size.
pub(crate) fn check_payload(config: &QueueConfig, payload: &[u8]) -> Result<()> {
    if payload.len() > config.max_payload {
        return Err(Error::TooLarge {
            size: payload.len(),
            limit: config.max_payload,
        });
    }
    Ok(())
}

/// Checks a run timeout (`Err` with the reason).
pub(crate) fn check_timeout(timeout: Option<Duration>) -> std::result::Result<(), String> {
    match timeout {
        Some(t) if t.is_zero() => Err("a zero run timeout".into()),
        Some(t) if t > MAX_JOB_WAIT => Err(format!(
            "a run timeout of {t:?} is over the limit of {MAX_JOB_WAIT:?}"
        )),
        _ => Ok(()),
    }
}

/// Checks a backoff (`Err` with the reason).
pub(crate) fn check_backoff(backoff: Backoff) -> std::result::Result<(), String> {
    let longest = match backoff {
        Backoff::Fixed(d) => d,
        Backoff::Exponential { base, max } => {
            if base.is_zero() || max < base {
                return Err(format!(
                    "exponential backoff needs 0 < base <= max, got {base:?}..{max:?}"
                ));
            }
            max
        }
    };
    if longest > MAX_JOB_WAIT {
        return Err(format!(
            "a backoff of {longest:?} is over the limit of {MAX_JOB_WAIT:?}"
        ));
    }
    Ok(())
}

/// Checks a delay, wait, lease or lifetime against [`MAX_DURATION`]; its whole ms.
pub(crate) fn check_duration(what: &str, d: Duration) -> Result<u64> {
    if d > MAX_DURATION {
        return Err(Error::InvalidArgument(format!(
            "{what} of {d:?} is over the limit of {MAX_DURATION:?} (100 years)"
        )));
    }
    Ok(ms(d))
}

/// Checks a schedule occurrence: at most [`MAX_DURATION`] ahead.
pub(crate) fn check_occurrence(at: SystemTime) -> Result<()> {
    if let Ok(ahead) = at.duration_since(SystemTime::now()) {
        check_duration("an occurrence ahead", ahead)?;
    }
    Ok(())
}

/// Checks a listing offset against [`MAX_COUNT`].
pub(crate) fn check_offset(offset: usize) -> Result<()> {
    if u64::try_from(offset).map_or(true, |o| o > MAX_COUNT) {
        return Err(Error::InvalidArgument(format!(
            "a listing offset of {offset}, over the limit of {MAX_COUNT}"
        )));
    }
    Ok(())
}

/// Checks a fetch's or listing's size.
pub(crate) fn check_batch(what: &str, n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(Error::InvalidArgument(format!(
            "{what} of {n}, over the limit of {MAX_BATCH}"
        )));
    }
    Ok(())
}

/// Checks a progress report's size.
pub(crate) fn check_progress(config: &QueueConfig, progress: &[u8]) -> Result<()> {
    if progress.len() > config.max_payload {
        return Err(Error::TooLarge {
            size: progress.len(),
            limit: config.max_payload,
        });
    }
    Ok(())
}

/// Checks that events are recorded and a read's size.
pub(crate) fn check_events(config: &QueueConfig, max: usize) -> Result<()> {
    if config.events == 0 {
        return Err(Error::InvalidConfig(
            "this queue records no events (see QueueConfig::events)".into(),
        ));
    }
    if max == 0 {
        return Err(Error::InvalidArgument("a read of zero events".into()));
    }
    check_batch("a read of events", max)
}

/// Checks a lease's visibility timeout.
pub(crate) fn check_visibility(visibility: Duration) -> Result<()> {
    if visibility < Duration::from_millis(1) {
        return Err(Error::InvalidArgument(format!(
            "the visibility timeout must be at least 1 ms, got {visibility:?}"
        )));
    }
    check_duration("a visibility timeout", visibility).map(drop)
}
