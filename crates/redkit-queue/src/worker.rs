//! The worker: fetches jobs in batches, runs a handler on each with a concurrency limit,
//! keeps their leases alive, records results and failures, and shuts down gracefully.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Delivery, Error, JobId, Lease, MAX_BATCH, Priority, Queue, Result};

/// One job for the handler: its payload decoded, and its history.
#[derive(Debug)]
#[non_exhaustive]
pub struct Job<T> {
    /// The job's id.
    pub id: JobId,
    /// The decoded payload.
    pub payload: T,
    /// Which attempt this is (1 for the first run).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Times an earlier run stalled.
    pub stalls: u32,
    /// The job's priority.
    pub priority: Priority,
    /// When it was enqueued.
    pub enqueued_at: SystemTime,
    lost: CancellationToken,
    queue: Arc<dyn Queue>,
    lease: Lease,
}

impl<T> Job<T> {
    /// Reports progress (any JSON value: a percentage, a step, counts): kept with the job
    /// ([`crate::JobInfo::progress`]) and recorded as a `Progress` event.
    /// [`Error::LeaseLost`] once this run's lease is lost.
    pub async fn progress<P: Serialize + ?Sized>(&self, progress: &P) -> Result<()> {
        let bytes = serde_json::to_vec(progress).map_err(|e| Error::Codec(e.to_string()))?;
        self.queue.progress(&self.lease, Bytes::from(bytes)).await
    }

    /// Resolves when this delivery's lease was lost (the heartbeat could not extend it:
    /// the job may be running elsewhere). The worker stops the handler then; a handler
    /// doing work outside its future (threads, other tasks) should stop it too.
    pub async fn lease_lost(&self) {
        self.lost.cancelled().await;
    }

    /// Whether the lease was lost.
    pub fn is_lease_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

/// What a worker did, returned at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Jobs completed.
    pub completed: u64,
    /// Failed runs that will be retried.
    pub failed: u64,
    /// Jobs that died here (out of attempts, or undecodable).
    pub dead: u64,
    /// Runs whose lease was lost (the job went, or will go, to another worker).
    pub lease_lost: u64,
    /// Jobs handed back unfinished at the shutdown deadline (they run again elsewhere).
    pub released: u64,
    /// Store errors the loop survived (it backs off and goes on).
    pub store_errors: u64,
}

#[derive(Debug, Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    lease_lost: AtomicU64,
    released: AtomicU64,
    store_errors: AtomicU64,
}

impl Counters {
    fn report(&self) -> Report {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Report {
            completed: g(&self.completed),
            failed: g(&self.failed),
            dead: g(&self.dead),
            lease_lost: g(&self.lease_lost),
            released: g(&self.released),
            store_errors: g(&self.store_errors),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Builds a [`Worker`].
#[derive(Clone)]
pub struct WorkerBuilder {
    queue: Arc<dyn Queue>,
    concurrency: usize,
    batch: usize,
    visibility: Duration,
    heartbeat: Option<Duration>,
    idle: Duration,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("queue", &self.queue.name())
            .field("concurrency", &self.concurrency)
            .field("batch", &self.batch)
            .field("visibility", &self.visibility)
            .finish()
    }
}

impl WorkerBuilder {
    /// How many handlers run at once (default 10).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// The most jobs one fetch takes (default 50; never more than free handler slots).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// How long a fetched job stays leased to this worker without a heartbeat (default
    /// 30 s). A worker that dies holds its jobs at most this long; then they run
    /// elsewhere, an attempt counted.
    pub fn visibility_timeout(mut self, d: Duration) -> Self {
        self.visibility = d;
        self
    }

    /// How often running jobs' leases are extended (default a third of the visibility
    /// timeout). Also how often due delayed jobs and expired leases are swept while every
    /// slot is busy.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// The longest an idle worker waits before it looks again without a wake-up (default
    /// 5 s; it also wakes when the next delayed job is due).
    pub fn idle_wait(mut self, d: Duration) -> Self {
        self.idle = d;
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<Worker> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if self.concurrency == 0 || self.concurrency > 100_000 {
            return bad(format!(
                "concurrency must be in 1..=100000, got {}",
                self.concurrency
            ));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return bad(format!(
                "batch must be in 1..={MAX_BATCH}, got {}",
                self.batch
            ));
        }
        if self.visibility < Duration::from_millis(30) {
            return bad(format!(
                "the visibility timeout must be at least 30 ms, got {:?}",
                self.visibility
            ));
        }
        let heartbeat = self.heartbeat.unwrap_or(self.visibility / 3);
        if heartbeat.is_zero() || heartbeat >= self.visibility {
            return bad(format!(
                "the heartbeat must be positive and shorter than the visibility timeout, got {heartbeat:?}"
            ));
        }
        if self.idle.is_zero() {
            return bad("the idle wait must be positive".into());
        }
        for (what, d) in [
            ("visibility timeout", self.visibility),
            ("idle wait", self.idle),
        ] {
            if d > crate::MAX_DURATION {
                return bad(format!(
                    "the {what} of {d:?} is over the limit of {:?}",
                    crate::MAX_DURATION
                ));
            }
        }
        Ok(Worker {
            cfg: Arc::new(WorkerBuilder {
                heartbeat: Some(heartbeat),
                ..self
            }),
        })
    }
}

/// Runs a handler over a queue, at least once per job.
#[derive(Debug, Clone)]
pub struct Worker {
    cfg: Arc<WorkerBuilder>,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    cancel: CancellationToken,
    deadline: Arc<Mutex<Duration>>,
    task: tokio::task::JoinHandle<Report>,
}

impl WorkerHandle {
    /// Stops fetching, lets running handlers finish for up to `deadline`, then stops the
    /// rest and hands their jobs back (they run again elsewhere, no attempt counted).
    pub async fn shutdown(self, deadline: Duration) -> Report {
        if let Ok(mut d) = self.deadline.lock() {
            *d = deadline;
        }
        self.cancel.cancel();
        self.task.await.unwrap_or_default()
    }

    /// Stops everything at once, as a crash would: running jobs keep their leases until
    /// the visibility timeout, then run elsewhere with an attempt counted.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Whether the worker stopped (after a shutdown, or a panic in the loop).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// The longest a fetch waits for more free slots while jobs run.
const GATHER: Duration = Duration::from_millis(2);

type InFlight = Arc<Mutex<HashMap<JobId, (Lease, CancellationToken)>>>;

/// Completions waiting to go out with the next fetch (or on their own while the worker
/// is idle or shutting down): their jobs stay in flight, leases extended, until recorded.
#[derive(Debug, Default)]
struct Acks {
    done: Mutex<Vec<(Lease, Bytes)>>,
    ready: tokio::sync::Notify,
}

impl Acks {
    fn push(&self, lease: Lease, result: Bytes) {
        if let Ok(mut d) = self.done.lock() {
            d.push((lease, result));
        }
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<(Lease, Bytes)> {
        self.done
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }

    /// Puts completions back after a failed call (one recorded twice is harmless: the
    /// second finds no lease).
    fn restore(&self, mut back: Vec<(Lease, Bytes)>) {
        if let Ok(mut d) = self.done.lock() {
            back.append(&mut d);
            *d = back;
        }
    }
}

/// Counts what a completion call recorded; those jobs leave the in-flight set.
fn recorded(done: &[(Lease, Bytes)], acked: &[bool], counters: &Counters, in_flight: &InFlight) {
    if let Ok(mut m) = in_flight.lock() {
        for (lease, _) in done {
            m.remove(&lease.id);
        }
    }
    for ((lease, _), ok) in done.iter().zip(acked) {
        if *ok {
            bump(&counters.completed);
        } else {
            bump(&counters.lease_lost);
            tracing::warn!(job = %lease.id, "completed after its lease was lost; it runs again");
        }
    }
}

/// Records buffered completions on their own.
async fn flush(queue: &dyn Queue, acks: &Acks, counters: &Counters, in_flight: &InFlight) {
    let done = acks.take();
    if done.is_empty() {
        return;
    }
    match queue.complete(&done).await {
        Ok(acked) => recorded(&done, &acked, counters, in_flight),
        Err(e) => {
            bump(&counters.store_errors);
            tracing::warn!(error = %e, jobs = done.len(), "could not record completions; retrying");
            acks.restore(done);
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Worker {
    /// A worker over `queue`.
    pub fn builder(queue: Arc<dyn Queue>) -> WorkerBuilder {
        WorkerBuilder {
            queue,
            concurrency: 10,
            batch: 50,
            visibility: Duration::from_secs(30),
            heartbeat: None,
            idle: Duration::from_secs(5),
        }
    }

    /// Starts running `handler` on the tokio runtime. Payloads are JSON; one that does
    /// not decode as `T` goes straight to the dead set with the reason (never a crash
    /// loop). A handler's `Ok` value is the job's result (kept with completed-job
    /// retention); an `Err`, a panic or a run past the job's timeout is a failed attempt,
    /// retried after the job's backoff until its attempts run out.
    pub fn run<T, R, E, F, Fut>(&self, handler: F) -> WorkerHandle
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(Job<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let deadline = Arc::new(Mutex::new(Duration::ZERO));
        let task = tokio::spawn(run_loop(
            self.cfg.clone(),
            Arc::new(handler),
            cancel.clone(),
            deadline.clone(),
        ));
        WorkerHandle {
            cancel,
            deadline,
            task,
        }
    }
}

async fn run_loop<T, R, E, F, Fut>(
    cfg: Arc<WorkerBuilder>,
    handler: Arc<F>,
    cancel: CancellationToken,
    deadline: Arc<Mutex<Duration>>,
) -> Report
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: fmt::Display + Send + 'static,
    F: Fn(Job<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    let in_flight: InFlight = Arc::default();
    // completions go out with the next fetch: one script for both
    let acks: Arc<Acks> = Arc::default();
    let _heartbeat = AbortOnDrop(
        tokio::spawn(heartbeat(cfg.clone(), in_flight.clone(), counters.clone())).abort_handle(),
    );
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut backoff = Duration::from_millis(50);
    'main: loop {
        while running.try_join_next().is_some() {}
        // one free slot first (without spinning), then as many more as are free
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            () = cancel.cancelled() => break,
        };
        let Ok(first) = first else { break };
        let mut slots = vec![first];
        let want = cfg.batch.min(cfg.concurrency);
        // with jobs still running, give them a moment to finish so one fetch serves
        // several slots (short jobs free slots one by one); at most GATHER, so a worker
        // of long jobs fetches as soon as a slot is free
        let gather = tokio::time::Instant::now() + GATHER;
        while slots.len() < want {
            match permits.clone().try_acquire_owned() {
                Ok(p) => slots.push(p),
                Err(_) if running.is_empty() => break,
                Err(_) => {
                    match tokio::time::timeout_at(gather, permits.clone().acquire_owned()).await {
                        Ok(Ok(p)) => slots.push(p),
                        _ => break,
                    }
                }
            }
        }
        let done = acks.take();
        let fetched = match cfg
            .queue
            .complete_and_fetch(&done, slots.len(), cfg.visibility)
            .await
        {
            Ok((acked, f)) => {
                backoff = Duration::from_millis(50);
                recorded(&done, &acked, &counters, &in_flight);
                f
            }
            Err(e) => {
                acks.restore(done);
                bump(&counters.store_errors);
                tracing::warn!(queue = cfg.queue.name(), error = %e, "fetch failed; backing off");
                drop(slots);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = cancel.cancelled() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        for (lease, why) in fetched.broken {
            bump(&counters.dead);
            if let Err(e) = cfg.queue.fail(&lease, &why, None).await {
                tracing::warn!(job = %lease.id, error = %e, "could not dead-letter a broken job");
            }
        }
        if fetched.deliveries.is_empty() {
            drop(slots);
            let wait = fetched
                .next_due
                .map_or(cfg.idle, |d| d.min(cfg.idle))
                .max(Duration::from_millis(1));
            // idle: wait for a wake-up, recording completions as they come
            let waiting = cfg.queue.wait(wait);
            tokio::pin!(waiting);
            loop {
                tokio::select! {
                    r = &mut waiting => {
                        if let Err(e) = r {
                            bump(&counters.store_errors);
                            tracing::debug!(error = %e, "waiting for jobs failed");
                            tokio::time::sleep(backoff.min(wait)).await;
                        }
                        break;
                    }
                    () = acks.ready.notified() => {
                        flush(&*cfg.queue, &acks, &counters, &in_flight).await;
                    }
                    () = cancel.cancelled() => break 'main,
                }
            }
            continue;
        }
        for (delivery, slot) in fetched.deliveries.into_iter().zip(slots) {
            let lost = CancellationToken::new();
            if let Ok(mut m) = in_flight.lock() {
                m.insert(
                    delivery.id().clone(),
                    (delivery.lease.clone(), lost.clone()),
                );
            }
            let (queue, handler, counters) = (cfg.queue.clone(), handler.clone(), counters.clone());
            let (acks, in_flight) = (acks.clone(), in_flight.clone());
            running.spawn(async move {
                let id = delivery.id().clone();
                match run_one(&queue, &*handler, &counters, delivery, lost).await {
                    // in flight until the completion is recorded
                    Settled::Completed(lease, result) => acks.push(lease, result),
                    // recorded or abandoned: no longer in flight
                    Settled::Done => {
                        if let Ok(mut m) = in_flight.lock() {
                            m.remove(&id);
                        }
                    }
                }
                drop(slot);
            });
        }
    }
    // shutdown: no more fetches; running handlers get until the deadline, their
    // completions recorded as they come
    let limit = deadline.lock().map(|d| *d).unwrap_or_default();
    let drained = tokio::time::timeout(limit, async {
        while running.join_next().await.is_some() {
            flush(&*cfg.queue, &acks, &counters, &in_flight).await;
        }
    })
    .await;
    flush(&*cfg.queue, &acks, &counters, &in_flight).await;
    if drained.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
        // completions that landed in the buffer meanwhile go out; the rest is handed back
        flush(&*cfg.queue, &acks, &counters, &in_flight).await;
        let left: Vec<Lease> = in_flight
            .lock()
            .map(|mut m| m.drain().map(|(_, (lease, _))| lease).collect())
            .unwrap_or_default();
        match cfg.queue.release(&left).await {
            Ok(n) => {
                counters.released.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                bump(&counters.store_errors);
                tracing::warn!(error = %e, jobs = left.len(), "could not hand jobs back; they run again after their leases");
            }
        }
    }
    counters.report()
}

/// Extends the leases of running jobs; a lease that could not be extended is lost, and
/// its handler is stopped. Also sweeps due and stalled jobs while every slot is busy.
async fn heartbeat(cfg: Arc<WorkerBuilder>, in_flight: InFlight, counters: Arc<Counters>) {
    let every = cfg.heartbeat.unwrap_or(cfg.visibility / 3);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held: Vec<(Lease, CancellationToken)> = in_flight
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        if !held.is_empty() {
            let leases: Vec<Lease> = held.iter().map(|(l, _)| l.clone()).collect();
            match cfg.queue.extend(&leases, cfg.visibility).await {
                Ok(kept) => {
                    for ((lease, lost), ok) in held.iter().zip(kept) {
                        if !ok {
                            tracing::warn!(job = %lease.id, "lease lost; stopping its handler");
                            lost.cancel();
                        }
                    }
                }
                Err(e) => {
                    bump(&counters.store_errors);
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        }
        if let Err(e) = cfg.queue.fetch(0, cfg.visibility).await {
            tracing::debug!(error = %e, "sweep failed");
        }
    }
}

/// How a run ended, for the loop.
enum Settled {
    /// Failed, dead or abandoned: already recorded.
    Done,
    /// Succeeded: to be recorded with this result.
    Completed(Lease, Bytes),
}

async fn run_one<T, R, E, F, Fut>(
    queue: &Arc<dyn Queue>,
    handler: &F,
    counters: &Counters,
    delivery: Delivery,
    lost: CancellationToken,
) -> Settled
where
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: fmt::Display + Send + 'static,
    F: Fn(Job<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
{
    let payload: T = match serde_json::from_slice(&delivery.payload) {
        Ok(p) => p,
        Err(e) => {
            let why = format!("undecodable payload: {e}");
            tracing::error!(job = %delivery.id(), error = why, "job dead-lettered");
            settle_failure(&**queue, counters, &delivery, &why, None).await;
            return Settled::Done;
        }
    };
    let job = Job {
        queue: Arc::clone(queue),
        lease: delivery.lease.clone(),
        id: delivery.id().clone(),
        payload,
        attempt: delivery.attempt,
        max_attempts: delivery.max_attempts,
        stalls: delivery.stalls,
        priority: delivery.priority,
        enqueued_at: delivery.enqueued_at,
        lost: lost.clone(),
    };
    let run = AssertUnwindSafe(handler(job)).catch_unwind();
    let outcome: std::result::Result<R, String> = tokio::select! {
        r = async {
            match delivery.timeout {
                Some(t) => tokio::time::timeout(t, run).await.map_err(|_| format!("timed out after {t:?}")),
                None => Ok(run.await),
            }
        } => match r {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(_)) => Err("the handler panicked".into()),
            Err(timeout) => Err(timeout),
        },
        () = lost.cancelled() => {
            bump(&counters.lease_lost);
            return Settled::Done;
        }
    };
    match outcome {
        Ok(value) => match serde_json::to_vec(&value) {
            Ok(b) => Settled::Completed(delivery.lease, Bytes::from(b)),
            Err(e) => {
                let why = format!("the result could not be encoded: {e}");
                settle_failure(&**queue, counters, &delivery, &why, retry_of(&delivery)).await;
                Settled::Done
            }
        },
        Err(why) => {
            settle_failure(&**queue, counters, &delivery, &why, retry_of(&delivery)).await;
            Settled::Done
        }
    }
}

/// When a failed run is tried again: after its backoff, or never on its last attempt.
fn retry_of(d: &Delivery) -> Option<Duration> {
    (!d.is_last_attempt()).then(|| d.retry_delay())
}

async fn settle_failure(
    queue: &dyn Queue,
    counters: &Counters,
    delivery: &Delivery,
    why: &str,
    retry: Option<Duration>,
) {
    match queue.fail(&delivery.lease, why, retry).await {
        Ok(()) if retry.is_some() => bump(&counters.failed),
        Ok(()) => bump(&counters.dead),
        Err(Error::LeaseLost(_)) => bump(&counters.lease_lost),
        Err(e) => {
            bump(&counters.store_errors);
            tracing::warn!(job = %delivery.id(), error = %e, "could not record a failure; the job runs again after its lease");
        }
    }
}
