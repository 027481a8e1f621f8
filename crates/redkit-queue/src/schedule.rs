//! Repeatable jobs: schedules (fixed intervals or cron patterns) turned into jobs by one
//! owner among any number of processes, each occurrence enqueued once.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::job::{check_name, unix_ms};
use crate::{Enqueued, Error, JobId, JobOptions, MAX_ID_LEN, NewJob, Queue, Result};

type Step = dyn Fn(u64, Direction) -> Option<u64> + Send + Sync;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The first occurrence strictly after.
    After,
    /// The last occurrence at or before.
    AtOrBefore,
}

/// When a repeatable job runs: every fixed interval, or on a cron pattern.
#[derive(Clone)]
pub struct Schedule {
    what: String,
    step: Arc<Step>,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.what).finish()
    }
}

impl Schedule {
    /// Every `interval` (at least 1 ms), at the multiples of `interval` since the Unix
    /// epoch (`every(1 h)` runs on the hour, in every process alike).
    pub fn every(interval: Duration) -> Result<Schedule> {
        let i = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        if interval > crate::MAX_DURATION {
            return Err(Error::InvalidArgument(format!(
                "a schedule's interval of {interval:?} is over the limit of {:?}",
                crate::MAX_DURATION
            )));
        }
        if i == 0 {
            return Err(Error::InvalidArgument(format!(
                "a schedule's interval must be at least 1 ms, got {interval:?}"
            )));
        }
        Ok(Schedule {
            what: format!("every {interval:?}"),
            step: Arc::new(move |t, dir| match dir {
                Direction::After => (t / i).checked_add(1)?.checked_mul(i),
                Direction::AtOrBefore => Some(t / i * i),
            }),
        })
    }

    /// On a cron pattern, in UTC: five fields (minute hour day-of-month month
    /// day-of-week) or six with seconds first; `L`, `W`, `#`, ranges, steps, names and
    /// `@daily`-style aliases as in Vixie cron and croner.
    pub fn cron(pattern: &str) -> Result<Schedule> {
        Self::cron_in(pattern, Utc)
    }

    /// On a cron pattern read in a time zone (for example a `chrono_tz::Tz`): `0 0 9 * * *`
    /// in `Europe/Paris` runs at nine local time on both sides of a daylight saving change;
    /// a time skipped by the change runs at the first instant after it, a time that occurs
    /// twice runs once.
    pub fn cron_in<Tz>(pattern: &str, zone: Tz) -> Result<Schedule>
    where
        Tz: TimeZone + Send + Sync + 'static,
        Tz::Offset: Send + Sync,
    {
        let cron: Cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(pattern)
            .map_err(|e| Error::InvalidArgument(format!("cron pattern {pattern:?}: {e}")))?;
        // a pattern that never matches (30 February) is refused here, not found later
        let now = zone.timestamp_millis_opt(0).single();
        if now.is_some_and(|t| cron.find_next_occurrence(&t, false).is_err()) {
            return Err(Error::InvalidArgument(format!(
                "cron pattern {pattern:?} never matches"
            )));
        }
        Ok(Schedule {
            what: format!("cron {pattern:?}"),
            step: Arc::new(move |t, dir| {
                let at = zone.timestamp_millis_opt(i64::try_from(t).ok()?).single()?;
                let found = match dir {
                    Direction::After => cron.find_next_occurrence(&at, false),
                    Direction::AtOrBefore => cron.find_previous_occurrence(&at, true),
                };
                u64::try_from(found.ok()?.timestamp_millis()).ok()
            }),
        })
    }

    /// The first occurrence after `t`.
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        (self.step)(unix_ms(t), Direction::After).map(from_ms)
    }

    fn after(&self, t: u64) -> Option<u64> {
        (self.step)(t, Direction::After)
    }

    fn at_or_before(&self, t: u64) -> Option<u64> {
        (self.step)(t, Direction::AtOrBefore)
    }
}

impl FromStr for Schedule {
    type Err = Error;

    /// A cron pattern in UTC (see [`Schedule::cron`]).
    fn from_str(pattern: &str) -> Result<Schedule> {
        Schedule::cron(pattern)
    }
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// What the owner does about occurrences that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missed {
    /// Run the latest missed occurrence once, now (the default): a nightly job whose
    /// night was missed runs when the schedulers are back, once.
    #[default]
    RunOnce,
    /// Skip them: the next run is the next occurrence from now.
    Skip,
}

/// A repeatable job: a name (unique within the queue), a schedule, a payload and options.
/// Each occurrence becomes a job with the id `<name>@<unix ms of the occurrence>`.
#[derive(Debug, Clone)]
pub struct Repeat {
    name: String,
    schedule: Schedule,
    payload: Bytes,
    options: JobOptions,
    missed: Missed,
    start: Option<SystemTime>,
    end: Option<SystemTime>,
}

impl Repeat {
    /// A repeatable job with a JSON payload. The name: non-empty, no braces or control
    /// characters, at most 480 bytes.
    pub fn new<T: Serialize + ?Sized>(
        name: &str,
        schedule: Schedule,
        payload: &T,
    ) -> Result<Repeat> {
        let bytes = serde_json::to_vec(payload).map_err(|e| Error::Codec(e.to_string()))?;
        Self::from_bytes(name, schedule, bytes)
    }

    /// A repeatable job with a payload of raw bytes.
    pub fn from_bytes(name: &str, schedule: Schedule, payload: impl Into<Bytes>) -> Result<Repeat> {
        check_name("schedule name", name)?;
        if name.len() > MAX_NAME {
            return Err(Error::InvalidArgument(format!(
                "schedule name of {} bytes, over the limit of {MAX_NAME}",
                name.len()
            )));
        }
        Ok(Repeat {
            name: name.to_string(),
            schedule,
            payload: payload.into(),
            options: JobOptions::new(),
            missed: Missed::default(),
            start: None,
            end: None,
        })
    }

    /// Options of every occurrence's job (priority, attempts, backoff, timeout). Its
    /// `id`, `unique`, `delay` and `run_at` are the schedule's to set: giving them is an
    /// error at [`SchedulerBuilder::build`].
    pub fn options(mut self, options: JobOptions) -> Self {
        self.options = options;
        self
    }

    /// What to do about occurrences missed while no scheduler ran.
    pub fn missed(mut self, missed: Missed) -> Self {
        self.missed = missed;
        self
    }

    /// No occurrence before `at`.
    pub fn starting(mut self, at: SystemTime) -> Self {
        self.start = Some(at);
        self
    }

    /// No occurrence after `at`.
    pub fn until(mut self, at: SystemTime) -> Self {
        self.end = Some(at);
        self
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The job id of the occurrence at `at` (unix ms).
    fn job_id(&self, at: u64) -> String {
        format!("{}@{at}", self.name)
    }

    fn in_range(&self, at: u64) -> bool {
        self.end.is_none_or(|end| at <= unix_ms(end))
    }

    /// The first occurrence after `t` that is not before the start.
    fn first_after(&self, t: u64) -> Option<u64> {
        let from = match self.start {
            Some(s) => t.max(unix_ms(s).saturating_sub(1)),
            None => t,
        };
        self.schedule.after(from).filter(|&at| self.in_range(at))
    }

    /// The occurrences to enqueue now, given the last one enqueued and the time: none
    /// while the last is still ahead; else the latest missed one (with `RunOnce`) and the
    /// next one ahead, in order.
    fn due(&self, last: Option<u64>, now: u64) -> Vec<u64> {
        match last {
            Some(l) if l > now => Vec::new(),
            None => self.first_after(now).into_iter().collect(),
            Some(l) => {
                let mut out = Vec::new();
                let next = self.first_after(l);
                if next.is_some_and(|n| n <= now) && self.missed == Missed::RunOnce {
                    // the latest occurrence at or before now, never before `next`
                    let latest = self.schedule.at_or_before(now);
                    if let Some(m) = latest.filter(|&m| m > l && self.in_range(m)) {
                        out.push(m.max(next.unwrap_or(m)));
                    }
                }
                out.extend(self.first_after(now));
                out
            }
        }
    }

    /// The job of the occurrence at `at`.
    fn job(&self, at: u64) -> NewJob {
        NewJob::new(
            self.payload.clone(),
            self.options.clone().id(self.job_id(at)),
        )
    }
}

/// The longest schedule name: `<name>@<20 digits>` must fit a job id.
const MAX_NAME: usize = MAX_ID_LEN - 32;

/// Runs the repeatable jobs of one queue. Start one in every process that may own the
/// schedule: one of them (the holder of the queue's scheduler lease) enqueues, the others
/// stand by and take over within one lease time when it stops or dies.
///
/// Each occurrence is enqueued once, whatever the owners do: [`Queue::fire`] records the
/// last occurrence per schedule in the same atomic step that enqueues it, and refuses an
/// occurrence that is not later. The next occurrence is enqueued ahead, as a delayed job
/// due at its time, so it runs on time even if no scheduler is alive then.
#[derive(Debug)]
pub struct Scheduler {
    queue: Arc<dyn Queue>,
    repeats: Arc<Vec<Repeat>>,
    lease: Duration,
    tick: Duration,
}

/// Options of a [`Scheduler`].
#[derive(Debug)]
pub struct SchedulerBuilder {
    queue: Arc<dyn Queue>,
    repeats: Vec<Repeat>,
    lease: Duration,
    tick: Duration,
}

impl Scheduler {
    /// A scheduler of `queue` with no schedules yet.
    pub fn builder(queue: Arc<dyn Queue>) -> SchedulerBuilder {
        SchedulerBuilder {
            queue,
            repeats: Vec::new(),
            lease: Duration::from_secs(30),
            tick: Duration::from_secs(1),
        }
    }

    /// Starts the scheduling task (on the current tokio runtime).
    pub fn start(self) -> SchedulerHandle {
        let cancel = CancellationToken::new();
        let owner = uuid::Uuid::new_v4().simple().to_string();
        let state = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(run(self, owner, cancel.clone(), Arc::clone(&state)));
        SchedulerHandle {
            cancel,
            owner: state,
            task,
        }
    }
}

impl SchedulerBuilder {
    /// Adds a repeatable job (names unique within the scheduler).
    pub fn repeat(mut self, repeat: Repeat) -> Self {
        self.repeats.push(repeat);
        self
    }

    /// How long an owner holds the lease without renewing it (default 30 s, at least
    /// 10 ms): a stand-by takes over at most this long after an owner died. Renewed
    /// every third of it.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The longest the scheduler sleeps between looks at its schedules (default 1 s);
    /// it also wakes when an occurrence it enqueued comes due.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<Scheduler> {
        if self.lease < Duration::from_millis(10) {
            return Err(Error::InvalidConfig(format!(
                "the scheduler lease must be at least 10 ms, got {:?}",
                self.lease
            )));
        }
        if self.lease > crate::MAX_DURATION {
            return Err(Error::InvalidConfig(format!(
                "the scheduler lease of {:?} is over the limit of {:?}",
                self.lease,
                crate::MAX_DURATION
            )));
        }
        if self.tick.is_zero() {
            return Err(Error::InvalidConfig("a zero scheduler tick".into()));
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.repeats {
            if !names.insert(r.name.as_str()) {
                return Err(Error::InvalidConfig(format!(
                    "two schedules named {:?}",
                    r.name
                )));
            }
            let o = &r.options;
            if o.id.is_some() || o.unique.is_some() || o.delay.is_some() || o.run_at.is_some() {
                return Err(Error::InvalidConfig(format!(
                    "schedule {:?}: a repeatable job's id, unique key and time come from its schedule",
                    r.name
                )));
            }
        }
        Ok(Scheduler {
            queue: self.queue,
            repeats: Arc::new(self.repeats),
            lease: self.lease,
            tick: self.tick,
        })
    }
}

/// A running [`Scheduler`]. Dropping it stops the scheduler without giving the lease
/// back (a stand-by takes over after the lease time); [`SchedulerHandle::shutdown`] gives
/// it back at once.
#[derive(Debug)]
pub struct SchedulerHandle {
    cancel: CancellationToken,
    owner: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl SchedulerHandle {
    /// Whether this scheduler held the lease at its last look.
    pub fn is_owner(&self) -> bool {
        self.owner.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops the scheduler and gives the lease back, so a stand-by takes over at once.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    s: Scheduler,
    owner: String,
    cancel: CancellationToken,
    is_owner: Arc<std::sync::atomic::AtomicBool>,
) {
    let renew = s.lease / 3;
    loop {
        let mut sleep = renew.min(s.tick);
        match s.queue.schedule_lease(&owner, s.lease).await {
            Ok((held, now)) => {
                is_owner.store(held, std::sync::atomic::Ordering::Release);
                if held {
                    let now = unix_ms(now);
                    for r in s.repeats.iter() {
                        match tend(&*s.queue, r, now).await {
                            Ok(Some(wake)) => {
                                sleep = sleep.min(Duration::from_millis(wake.saturating_sub(now)));
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(schedule = r.name, error = %e, "scheduling failed");
                            }
                        }
                    }
                }
            }
            Err(e) => {
                is_owner.store(false, std::sync::atomic::Ordering::Release);
                tracing::warn!(queue = s.queue.name(), error = %e, "scheduler lease failed");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(sleep.max(Duration::from_millis(1))) => {}
        }
    }
    is_owner.store(false, std::sync::atomic::Ordering::Release);
    if let Err(e) = s.queue.schedule_release(&owner).await {
        tracing::warn!(queue = s.queue.name(), error = %e, "scheduler lease not given back");
    }
}

/// Enqueues what is due of one schedule; when its next occurrence is due (to wake then).
async fn tend(queue: &dyn Queue, r: &Repeat, now: u64) -> Result<Option<u64>> {
    let last = queue.last_fired(&r.name).await?.map(unix_ms);
    let mut ahead = last.filter(|&l| l > now);
    for at in r.due(last, now) {
        let fired = queue.fire(&r.name, from_ms(at), r.job(at)).await?;
        if let Some(Enqueued::Added(id)) | Some(Enqueued::Duplicate(id)) = &fired {
            tracing::debug!(schedule = r.name, job = %id, "occurrence enqueued");
        }
        ahead = Some(at);
    }
    Ok(ahead)
}

/// The occurrence a job id of a repeatable job stands for (`<name>@<ms>`).
pub fn occurrence_of(id: &JobId) -> Option<(&str, SystemTime)> {
    let (name, ms) = id.as_str().rsplit_once('@')?;
    Some((name, from_ms(ms.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t: SystemTime) -> u64 {
        unix_ms(t)
    }

    #[test]
    fn intervals_are_aligned_to_the_epoch() {
        let s = Schedule::every(Duration::from_secs(60)).unwrap();
        assert_eq!(s.after(120_000), Some(180_000));
        assert_eq!(s.after(120_001), Some(180_000));
        assert_eq!(s.at_or_before(179_999), Some(120_000));
        assert!(Schedule::every(Duration::ZERO).is_err());
        assert!(Schedule::every(Duration::from_micros(999)).is_err());
    }

    #[test]
    fn cron_patterns_in_utc_and_in_a_zone() {
        let s = Schedule::cron("0 3 * * *").unwrap();
        // 2026-11-23 10:00 UTC -> 2026-11-24 03:00 UTC
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let next = s.next_after(t.into()).unwrap();
        assert_eq!(
            ms(next),
            u64::try_from(
                Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0)
                    .unwrap()
                    .timestamp_millis()
            )
            .unwrap()
        );
        let seconds = Schedule::cron("*/10 * * * * *").unwrap();
        assert_eq!(seconds.after(1_000), Some(10_000));
        let plus_two = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let zoned = Schedule::cron_in("0 3 * * *", plus_two).unwrap();
        assert_eq!(
            zoned.next_after(t.into()).map(ms),
            Some(ms(next) - 2 * 3_600_000)
        );
        for bad in ["", "61 * * * *", "* * *", "0 0 30 2 *", "banana"] {
            assert!(
                matches!(Schedule::cron(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn what_is_due_follows_the_last_occurrence_and_the_missed_policy() {
        let every = Schedule::every(Duration::from_secs(10)).unwrap();
        let r = Repeat::new("tick", every.clone(), &1).unwrap();
        // first look: the next occurrence ahead
        assert_eq!(r.due(None, 12_000), [20_000]);
        // the enqueued one is still ahead: nothing
        assert_eq!(r.due(Some(20_000), 15_000), Vec::<u64>::new());
        // it came due: the next one
        assert_eq!(r.due(Some(20_000), 20_000), [30_000]);
        assert_eq!(r.due(Some(20_000), 25_000), [30_000]);
        // three missed (30, 40, 50): the latest once, then the next
        assert_eq!(r.due(Some(20_000), 55_000), [50_000, 60_000]);
        let skip = r.clone().missed(Missed::Skip);
        assert_eq!(skip.due(Some(20_000), 55_000), [60_000]);
        // bounds
        let bounded = Repeat::new("b", every, &1)
            .unwrap()
            .starting(from_ms(40_000))
            .until(from_ms(50_000));
        assert_eq!(bounded.due(None, 12_000), [40_000]);
        assert_eq!(bounded.due(Some(50_000), 51_000), Vec::<u64>::new());
    }

    #[test]
    fn names_and_options_are_checked() {
        let every = || Schedule::every(Duration::from_secs(1)).unwrap();
        for bad in ["", "a{b}", "a\nb"] {
            assert!(Repeat::new(bad, every(), &1).is_err(), "{bad:?}");
        }
        assert!(Repeat::new(&"x".repeat(MAX_NAME + 1), every(), &1).is_err());
        let r = Repeat::new(&"x".repeat(MAX_NAME), every(), &1).unwrap();
        assert!(JobId::custom(r.job_id(u64::MAX)).is_ok());
        let id = JobId::custom(r.job_id(42)).unwrap();
        assert_eq!(occurrence_of(&id), Some((r.name(), from_ms(42))));
    }
}
