//! The in-memory backend: the same states, leases and tokens as the Redis scripts, in a
//! map on a [`Clock`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use redkit_core::{Clock, SystemClock};
use tokio::sync::Notify;

use crate::job::{Envelope, check_name, unix_ms};
use crate::{
    Enqueued, Error, Event, EventId, EventKind, Fetched, JobId, JobInfo, JobState, Lease, NewJob,
    Prepared, Queue, QueueConfig, Result, Retention, Stats, check_batch, check_events,
    check_progress, check_visibility, ms, prepare,
};

/// A sorted set: members by score, ties in insertion order.
#[derive(Debug, Default)]
struct ZSet {
    order: BTreeSet<(u64, u64, String)>,
    index: HashMap<String, (u64, u64)>,
    next: u64,
}

impl ZSet {
    fn add(&mut self, member: &str, score: u64) {
        self.remove(member);
        self.next += 1;
        self.order.insert((score, self.next, member.to_string()));
        self.index.insert(member.to_string(), (score, self.next));
    }

    fn remove(&mut self, member: &str) -> bool {
        match self.index.remove(member) {
            Some((score, n)) => self.order.remove(&(score, n, member.to_string())),
            None => false,
        }
    }

    fn contains(&self, member: &str) -> bool {
        self.index.contains_key(member)
    }

    fn due(&self, now: u64, limit: usize) -> Vec<String> {
        self.order
            .iter()
            .take_while(|(s, _, _)| *s <= now)
            .take(limit)
            .map(|(_, _, m)| m.clone())
            .collect()
    }

    fn first_score(&self) -> Option<u64> {
        self.order.first().map(|(s, _, _)| *s)
    }

    fn page(&self, offset: usize, limit: usize) -> Vec<String> {
        self.order
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(_, _, m)| m.clone())
            .collect()
    }

    fn len(&self) -> u64 {
        self.order.len() as u64
    }
}

#[derive(Debug, Default)]
struct State {
    seq: u64,
    jobs: HashMap<String, Envelope>,
    ready: [VecDeque<String>; 4],
    delayed: ZSet,
    lease: ZSet,
    inflight: HashMap<String, String>,
    dead: ZSet,
    completed: ZSet,
    errors: HashMap<String, String>,
    results: HashMap<String, Bytes>,
    progress: HashMap<String, Bytes>,
    events: VecDeque<Event>,
    last_event: (u64, u64),
    /// schedule -> last occurrence fired (ms)
    schedules: HashMap<String, u64>,
    /// the scheduler lease: owner, until (ms)
    scheduler: Option<(String, u64)>,
    /// unique key -> the job holding it until it finishes
    holds: HashMap<String, String>,
    /// unique key -> (job id, expires at ms): time-bound holds
    timed: HashMap<String, (String, u64)>,
    /// removed job -> levels of the ready lists still holding its id (skipped once each)
    removed: HashMap<String, String>,
    paused: bool,
}

impl State {
    fn live(&self, id: &str) -> bool {
        self.jobs.contains_key(id) && !self.dead.contains(id) && !self.completed.contains(id)
    }

    fn has_ready(&self) -> bool {
        self.ready.iter().any(|r| !r.is_empty())
    }

    fn level(&self, id: &str) -> usize {
        self.jobs
            .get(id)
            .map_or(2, |e| usize::from(e.priority.level()))
    }

    /// Gives back a unique key held until the job finishes, if it still names the job.
    fn release_unique(&mut self, key: Option<&str>, id: &str) {
        if let Some(k) = key
            && self.holds.get(k).is_some_and(|h| h == id)
        {
            self.holds.remove(k);
        }
    }

    /// Deletes a job's envelope and what it left besides: results, errors, progress.
    fn forget(&mut self, id: &str) {
        self.jobs.remove(id);
        self.results.remove(id);
        self.errors.remove(id);
        self.progress.remove(id);
    }

    /// Records an event in a log of at most `cap` entries (0: none), ids as on Redis.
    fn event(&mut self, cap: u64, now: u64, kind: EventKind, id: &str, detail: Bytes) {
        if cap == 0 {
            return;
        }
        self.last_event = if now > self.last_event.0 {
            (now, 0)
        } else {
            (self.last_event.0, self.last_event.1 + 1)
        };
        self.events.push_back(Event {
            id: EventId(format!("{}-{}", self.last_event.0, self.last_event.1)),
            kind,
            job: JobId(id.to_string()),
            detail,
        });
        while self.events.len() as u64 > cap {
            self.events.pop_front();
        }
    }

    /// Moves a job to the dead set, or deletes it when none are kept; trims the set.
    fn bury(&mut self, id: &str, now: u64, retention: Retention) {
        let most = match retention {
            Retention::None => return self.forget(id),
            Retention::Keep { count, .. } => count,
        };
        self.dead.add(id, now);
        if let Some(most) = most {
            for old in State::trim(&mut self.dead, most, TRIM_LIMIT) {
                self.forget(&old);
            }
        }
    }

    fn trim(set: &mut ZSet, most: u64, limit: usize) -> Vec<String> {
        let excess = set.len().saturating_sub(most);
        let old = set.page(0, usize::try_from(excess).unwrap_or(usize::MAX).min(limit));
        for id in &old {
            set.remove(id);
        }
        old
    }
}

/// A queue in process memory with the behaviour of [`crate::RedisQueue`] (conformance
/// suite): for tests and single-process use. Nothing survives the process. Cheap to
/// clone; clones share the jobs.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    name: Arc<str>,
    config: Arc<QueueConfig>,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
    recorded: Arc<Notify>,
    clock: Arc<dyn Clock>,
}

/// Jobs trimmed from the completed or dead set per call (as on Redis).
const TRIM_LIMIT: usize = 100;

impl MemoryQueue {
    /// A queue on the system clock.
    pub fn new(name: &str, config: QueueConfig) -> Result<MemoryQueue> {
        Self::with_clock(name, config, SystemClock)
    }

    /// A queue on the given clock (a `ManualClock` in tests: delays and leases follow it).
    pub fn with_clock(name: &str, config: QueueConfig, clock: impl Clock) -> Result<MemoryQueue> {
        config.validate(name)?;
        Ok(MemoryQueue {
            name: Arc::from(name),
            config: Arc::new(config),
            state: Arc::default(),
            wake: Arc::new(Notify::new()),
            recorded: Arc::new(Notify::new()),
            clock: Arc::new(clock),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds prepared jobs; with a schedule occurrence, only if it was not fired yet
    /// (`None` then).
    fn add(&self, prepared: Vec<Prepared>, schedule: Option<(&str, u64)>) -> Option<Vec<Enqueued>> {
        let now = self.now();
        let mut s = self.state();
        if let Some((name, at)) = schedule {
            if s.schedules.get(name).is_some_and(|&last| last >= at) {
                return None;
            }
            s.schedules.insert(name.to_string(), at);
        }
        let mut out = Vec::with_capacity(prepared.len());
        let mut woke = false;
        for p in prepared {
            let (id, mut duplicate) = match p.id {
                Some(id) => {
                    let dup = s.jobs.contains_key(&id).then(|| id.clone());
                    (id, dup)
                }
                None => {
                    s.seq += 1;
                    (s.seq.to_string(), None)
                }
            };
            if duplicate.is_none()
                && let Some((key, ttl)) = &p.unique
            {
                // as on Redis: a live holder until finished, then a time-bound holder
                // (any for a time-bound job, a live one for the other kind)
                let held = s.holds.get(key).filter(|h| s.live(h)).cloned();
                let timed = s
                    .timed
                    .get(key)
                    .filter(|(h, until)| *until > now && (*ttl > 0 || s.live(h)))
                    .map(|(h, _)| h.clone());
                match held.or(timed) {
                    Some(h) => duplicate = Some(h),
                    None if *ttl > 0 => {
                        s.timed
                            .insert(key.clone(), (id.clone(), now.saturating_add(*ttl)));
                    }
                    None => {
                        s.holds.insert(key.clone(), id.clone());
                    }
                }
            }
            if let Some(d) = duplicate {
                out.push(Enqueued::Duplicate(JobId(d)));
                continue;
            }
            s.jobs.insert(id.clone(), p.envelope);
            let due = match schedule {
                Some((_, at)) => at,
                None => now.saturating_add(p.delay_ms),
            };
            if due > now {
                s.delayed.add(&id, due);
            } else {
                s.ready[usize::from(p.level)].push_back(id.clone());
                woke = true;
            }
            out.push(Enqueued::Added(JobId(id)));
        }
        drop(s);
        if woke {
            self.wake.notify_one();
        }
        Some(out)
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &QueueConfig {
        &self.config
    }

    async fn enqueue_bytes(&self, jobs: Vec<NewJob>) -> Result<Vec<Enqueued>> {
        let prepared = prepare(&self.config, &jobs)?;
        Ok(self.add(prepared, None).unwrap_or_default())
    }

    async fn fire(&self, schedule: &str, at: SystemTime, job: NewJob) -> Result<Option<Enqueued>> {
        check_name("schedule name", schedule)?;
        crate::check_occurrence(at)?;
        let prepared = prepare(&self.config, &[job])?;
        Ok(self
            .add(prepared, Some((schedule, unix_ms(at))))
            .and_then(|mut out| out.pop()))
    }

    async fn last_fired(&self, schedule: &str) -> Result<Option<SystemTime>> {
        Ok(self
            .state()
            .schedules
            .get(schedule)
            .map(|&ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    async fn schedule_lease(&self, owner: &str, ttl: Duration) -> Result<(bool, SystemTime)> {
        crate::check_duration("a scheduler lease", ttl)?;
        let now = self.now();
        let mut s = self.state();
        let free = match &s.scheduler {
            None => true,
            Some((holder, until)) => holder == owner || *until <= now,
        };
        if free {
            s.scheduler = Some((owner.to_string(), now.saturating_add(ms(ttl).max(1))));
        }
        Ok((free, UNIX_EPOCH + Duration::from_millis(now)))
    }

    async fn schedule_release(&self, owner: &str) -> Result<()> {
        let mut s = self.state();
        if s.scheduler
            .as_ref()
            .is_some_and(|(holder, _)| holder == owner)
        {
            s.scheduler = None;
        }
        Ok(())
    }

    async fn fetch(&self, max: usize, visibility: Duration) -> Result<Fetched> {
        check_batch("a fetch", max)?;
        check_visibility(visibility)?;
        let now = self.now();
        let token = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        let mut s = self.state();
        for id in s.delayed.due(now, self.config.promote_limit as usize) {
            s.delayed.remove(&id);
            let level = s.level(&id);
            s.ready[level].push_back(id);
        }
        for id in s.lease.due(now, self.config.recover_limit as usize) {
            s.lease.remove(&id);
            s.inflight.remove(&id);
            let Some(env) = s.jobs.get_mut(&id) else {
                continue;
            };
            env.attempts = env.attempts.saturating_add(1);
            env.stalls = env.stalls.saturating_add(1);
            let why = format!("stalled: the lease ran out ({} time(s))", env.stalls);
            let dead = env.attempts >= env.max_attempts;
            let level = usize::from(env.priority.level());
            let unique = match &env.unique {
                Some((1, k)) => Some(k.clone()),
                _ => None,
            };
            s.errors.insert(id.clone(), why.clone());
            let kind = if dead {
                s.release_unique(unique.as_deref(), &id);
                s.bury(&id, now, self.config.dead);
                EventKind::Dead
            } else {
                s.ready[level].push_front(id.clone());
                EventKind::Stalled
            };
            s.event(self.config.events, now, kind, &id, Bytes::from(why));
        }
        let mut fetched = Fetched::default();
        if !s.paused {
            let mut ids = Vec::new();
            for level in 0..4 {
                while ids.len() < max {
                    match s.ready[level].pop_front() {
                        Some(id) => ids.push((id, level)),
                        None => break,
                    }
                }
            }
            let until = now.saturating_add(ms(visibility));
            let mut seen = std::collections::HashSet::new();
            for (id, level) in ids {
                // a removed job's place in line: skipped once
                let digit = char::from(b'0' + level as u8);
                if let Some(levels) = s.removed.get_mut(&id)
                    && let Some(at) = levels.find(digit)
                {
                    levels.remove(at);
                    if levels.is_empty() {
                        s.removed.remove(&id);
                    }
                    continue;
                }
                // never a job already leased, never twice in one fetch
                if s.inflight.contains_key(&id) || !seen.insert(id.clone()) {
                    continue;
                }
                let Some(env) = s.jobs.get(&id).cloned() else {
                    continue;
                };
                s.lease.add(&id, until);
                s.inflight.insert(id.clone(), token.clone());
                fetched
                    .deliveries
                    .push(env.delivery(JobId(id), token.clone()));
            }
            if max > 0 && s.has_ready() {
                self.wake.notify_one();
            }
        }
        let next = [s.delayed.first_score(), s.lease.first_score()]
            .into_iter()
            .flatten()
            .min();
        fetched.next_due = next.map(|at| Duration::from_millis(at.saturating_sub(now)));
        drop(s);
        self.recorded.notify_waiters();
        Ok(fetched)
    }

    async fn wait(&self, timeout: Duration) -> Result<()> {
        crate::check_duration("a wait", timeout)?;
        let _ = tokio::time::timeout(timeout, self.wake.notified()).await;
        Ok(())
    }

    async fn complete(&self, done: &[(Lease, Bytes)]) -> Result<Vec<bool>> {
        check_batch("a completion", done.len())?;
        let now = self.now();
        let mut s = self.state();
        let (keep, count, age) = match self.config.completed {
            Retention::None => (false, None, None),
            Retention::Keep { count, age } => (true, count, age),
        };
        let mut out = Vec::with_capacity(done.len());
        for (lease, result) in done {
            let id = lease.id.as_str();
            if s.inflight.get(id) != Some(&lease.token) {
                out.push(false);
                continue;
            }
            s.lease.remove(id);
            s.inflight.remove(id);
            s.errors.remove(id);
            if keep {
                s.completed.add(id, now);
                s.results.insert(id.to_string(), result.clone());
            } else {
                s.jobs.remove(id);
                s.progress.remove(id);
            }
            s.event(
                self.config.events,
                now,
                EventKind::Completed,
                id,
                Bytes::new(),
            );
            s.release_unique(lease.unique.as_deref(), id);
            out.push(true);
        }
        if keep {
            let mut old = Vec::new();
            if let Some(age) = age {
                old = s.completed.due(now.saturating_sub(ms(age)), TRIM_LIMIT);
                for id in &old {
                    s.completed.remove(id);
                }
            }
            if let Some(count) = count {
                old.extend(State::trim(&mut s.completed, count, TRIM_LIMIT - old.len()));
            }
            for id in old {
                s.forget(&id);
            }
        }
        drop(s);
        self.recorded.notify_waiters();
        Ok(out)
    }

    async fn fail(&self, lease: &Lease, error: &str, retry: Option<Duration>) -> Result<()> {
        if let Some(d) = retry {
            crate::check_duration("a retry wait", d)?;
        }
        let now = self.now();
        let mut s = self.state();
        let id = lease.id.as_str();
        if s.inflight.get(id) != Some(&lease.token) {
            return Err(Error::LeaseLost(lease.id.clone()));
        }
        s.lease.remove(id);
        s.inflight.remove(id);
        let Some(env) = s.jobs.get_mut(id) else {
            return Ok(());
        };
        env.attempts = env.attempts.saturating_add(1);
        let level = usize::from(env.priority.level());
        s.errors.insert(id.to_string(), error.to_string());
        let mut wake = false;
        let kind = match retry {
            Some(d) if d.is_zero() => {
                s.ready[level].push_back(id.to_string());
                wake = true;
                EventKind::Failed
            }
            Some(d) => {
                s.delayed.add(id, now.saturating_add(ms(d)));
                EventKind::Failed
            }
            None => {
                s.release_unique(lease.unique.as_deref(), id);
                s.bury(id, now, self.config.dead);
                EventKind::Dead
            }
        };
        s.event(
            self.config.events,
            now,
            kind,
            id,
            Bytes::from(error.to_string()),
        );
        drop(s);
        if wake {
            self.wake.notify_one();
        }
        self.recorded.notify_waiters();
        Ok(())
    }

    async fn extend(&self, leases: &[Lease], visibility: Duration) -> Result<Vec<bool>> {
        check_visibility(visibility)?;
        let until = self.now().saturating_add(ms(visibility));
        let mut s = self.state();
        Ok(leases
            .iter()
            .map(|l| {
                let held = s.inflight.get(l.id.as_str()) == Some(&l.token);
                if held {
                    s.lease.add(l.id.as_str(), until);
                }
                held
            })
            .collect())
    }

    async fn release(&self, leases: &[Lease]) -> Result<u64> {
        let mut s = self.state();
        let mut back = 0;
        for l in leases {
            let id = l.id.as_str();
            if s.inflight.get(id) != Some(&l.token) {
                continue;
            }
            s.lease.remove(id);
            s.inflight.remove(id);
            if s.jobs.contains_key(id) {
                let level = s.level(id);
                s.ready[level].push_front(id.to_string());
                back += 1;
            }
        }
        drop(s);
        if back > 0 {
            self.wake.notify_one();
        }
        Ok(back)
    }

    async fn job(&self, id: &JobId) -> Result<Option<JobInfo>> {
        let s = self.state();
        let id_s = id.as_str();
        let Some(env) = s.jobs.get(id_s).cloned() else {
            return Ok(None);
        };
        let error = s.errors.get(id_s).cloned();
        let state = if s.lease.contains(id_s) {
            JobState::Active
        } else if s.dead.contains(id_s) {
            JobState::Dead
        } else if s.completed.contains(id_s) {
            JobState::Completed
        } else if s.delayed.contains(id_s) {
            if error.is_some() {
                JobState::Failed
            } else {
                JobState::Delayed
            }
        } else if error.is_some() {
            JobState::Failed
        } else {
            JobState::Waiting
        };
        let result = s.results.get(id_s).cloned();
        let mut info = env.info(id.clone(), state, error, result);
        info.progress = s.progress.get(id_s).cloned();
        Ok(Some(info))
    }

    async fn list(&self, state: JobState, offset: usize, limit: usize) -> Result<Vec<JobInfo>> {
        check_batch("a listing", limit)?;
        crate::check_offset(offset)?;
        let s = self.state();
        let ids: Vec<String> = match state {
            JobState::Waiting => s
                .ready
                .iter()
                .flatten()
                .skip(offset)
                .take(limit)
                .cloned()
                .collect(),
            JobState::Delayed | JobState::Failed => s.delayed.page(offset, limit),
            JobState::Active => s.lease.page(offset, limit),
            JobState::Completed => s.completed.page(offset, limit),
            JobState::Dead => s.dead.page(offset, limit),
        };
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let env = s.jobs.get(&id)?.clone();
                Some(env.info(JobId(id), state, None, None))
            })
            .collect())
    }

    async fn stats(&self) -> Result<Stats> {
        let s = self.state();
        Ok(Stats {
            waiting: s.ready.iter().map(|r| r.len() as u64).sum(),
            delayed: s.delayed.len(),
            active: s.lease.len(),
            completed: s.completed.len(),
            dead: s.dead.len(),
            paused: s.paused,
        })
    }

    async fn pause(&self) -> Result<()> {
        self.state().paused = true;
        Ok(())
    }

    async fn resume(&self) -> Result<()> {
        self.state().paused = false;
        self.wake.notify_one();
        Ok(())
    }

    async fn retry_dead(&self, ids: &[JobId], limit: usize) -> Result<u64> {
        check_batch("a retry", limit.max(ids.len()))?;
        let mut s = self.state();
        let ids: Vec<String> = if ids.is_empty() {
            s.dead.page(0, limit)
        } else {
            ids.iter().map(|i| i.0.clone()).collect()
        };
        let mut back = 0;
        for id in ids {
            if !s.dead.remove(&id) {
                continue;
            }
            let Some(env) = s.jobs.get_mut(&id) else {
                continue;
            };
            env.attempts = 0;
            env.stalls = 0;
            let level = usize::from(env.priority.level());
            if let Some((1, k)) = &env.unique {
                let k = k.clone();
                s.holds.entry(k).or_insert_with(|| id.clone());
            }
            s.errors.remove(&id);
            s.progress.remove(&id);
            s.ready[level].push_back(id);
            back += 1;
        }
        drop(s);
        if back > 0 {
            self.wake.notify_one();
        }
        Ok(back)
    }

    async fn remove(&self, id: &JobId) -> Result<bool> {
        let mut s = self.state();
        let id = id.as_str();
        let Some(env) = s.jobs.remove(id) else {
            return Ok(false);
        };
        let mut waiting = true;
        let st = &mut *s;
        for set in [
            &mut st.delayed,
            &mut st.lease,
            &mut st.dead,
            &mut st.completed,
        ] {
            if set.remove(id) {
                waiting = false;
            }
        }
        s.inflight.remove(id);
        if waiting {
            // its id stays in its ready list; the fetch that meets it skips it, as on
            // Redis
            let digit = char::from(b'0' + env.priority.level());
            s.removed.entry(id.to_string()).or_default().push(digit);
        }
        if let Some((1, k)) = &env.unique {
            s.release_unique(Some(k), id);
        }
        s.forget(id);
        Ok(true)
    }

    async fn progress(&self, lease: &Lease, progress: Bytes) -> Result<()> {
        check_progress(&self.config, &progress)?;
        let now = self.now();
        let mut s = self.state();
        let id = lease.id.as_str();
        if s.inflight.get(id) != Some(&lease.token) || !s.jobs.contains_key(id) {
            return Err(Error::LeaseLost(lease.id.clone()));
        }
        s.progress.insert(id.to_string(), progress.clone());
        s.event(self.config.events, now, EventKind::Progress, id, progress);
        drop(s);
        self.recorded.notify_waiters();
        Ok(())
    }

    async fn events(&self, after: &EventId, max: usize, wait: Duration) -> Result<Vec<Event>> {
        check_events(&self.config, max)?;
        crate::check_duration("an event wait", wait)?;
        let after = EventId::split(after.as_str()).unwrap_or((0, 0));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // registered before the look, so an event recorded in between wakes it
            let recorded = self.recorded.notified();
            let found: Vec<Event> = self
                .state()
                .events
                .iter()
                .filter(|e| EventId::split(e.id.as_str()).is_some_and(|at| at > after))
                .take(max)
                .cloned()
                .collect();
            if !found.is_empty() {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, recorded).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn last_event_id(&self) -> Result<EventId> {
        check_events(&self.config, 1)?;
        Ok(self
            .state()
            .events
            .back()
            .map_or_else(EventId::start, |e| e.id.clone()))
    }
}
