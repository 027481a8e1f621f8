//! A consumer that runs a handler over a group's entries: batched blocking reads, a
//! concurrency limit, acks after success, claims of abandoned entries, dead letters.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redkit_core::Coalescer;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    Delivery, Error, Fields, MAX_BATCH, MAX_IDS, PAYLOAD_FIELD, Result, StartFrom, StreamStore,
    check_duration, check_name,
};

/// One entry for the handler: its payload decoded, its id and how often it was
/// delivered.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Message<T> {
    /// The entry's id.
    pub id: String,
    /// The decoded payload.
    pub payload: T,
    /// Deliveries so far, this one included.
    pub deliveries: u64,
    /// All the entry's fields.
    pub fields: Fields,
}

/// What a consumer did, returned at shutdown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Entries handled and acknowledged.
    pub processed: u64,
    /// Handler failures (the entry stays pending and is retried after `claim_after`).
    pub failed: u64,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Store errors the loop survived (it backs off and goes on).
    pub store_errors: u64,
    /// Handlers still running at the shutdown deadline, stopped; their entries stay
    /// pending for another consumer.
    pub abandoned: u64,
    /// Entries another consumer claimed while their handler ran here (this consumer
    /// stalled past `claim_after`): found by a heartbeat or refused at the ack, they are
    /// neither acknowledged nor dead-lettered by this consumer and stay with their new
    /// owner.
    pub lost: u64,
}

#[derive(Debug, Default)]
struct Counters {
    processed: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    store_errors: AtomicU64,
    lost: AtomicU64,
}

/// An entry whose handler runs in this consumer.
#[derive(Debug, Clone, Copy)]
struct Flight {
    /// When the request that last showed this consumer holds the entry was sent (the
    /// read or claim that delivered it, or a heartbeat that found it still held): the
    /// server reset its idle time after that instant.
    confirmed: Instant,
    /// A heartbeat found it claimed by another consumer.
    lost: bool,
}

/// The entries whose handlers run in this consumer. An id in here is never handed to a
/// second handler.
type InFlight = Arc<Mutex<HashMap<String, Flight>>>;

fn flights(f: &InFlight) -> MutexGuard<'_, HashMap<String, Flight>> {
    f.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes an entry out of the in-flight set when its handler task ends, however it ends:
/// returned, panicked or aborted. A panicked handler's entry is then no longer kept by
/// the heartbeats; it is retried after `claim_after` and dead-lettered after
/// `max_deliveries`, like a failure.
struct Landing {
    in_flight: InFlight,
    id: String,
}

impl Drop for Landing {
    fn drop(&mut self) {
        flights(&self.in_flight).remove(&self.id);
    }
}

/// Counts a handler task that panicked as a failure.
fn joined(counters: &Counters, r: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = r
        && e.is_panic()
    {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("a handler panicked; its entry is retried after claim_after");
    }
}

/// What the runs of one [`Consumer`] and its clones share: under one name they are one
/// consumer of the group, so an entry in flight in one run is not started by another,
/// and the own backlog is read once between them, not once per run.
#[derive(Debug)]
struct Shared {
    in_flight: InFlight,
    /// Runs going on now: the first of them reads the own backlog from its start.
    runs: AtomicUsize,
    /// Where the next read of the own backlog starts; none once it is read. Held across
    /// the read, so two runs never read the same entries.
    own: tokio::sync::Mutex<Option<String>>,
}

/// Counts a run out when its loop ends (also when it is aborted).
struct RunGuard(Arc<Shared>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.0.runs.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the handle shares with the running loop.
#[derive(Debug, Default)]
struct Control {
    /// The shutdown grace period, set by [`ConsumerHandle::shutdown`].
    deadline: Mutex<Duration>,
    /// Test hook: heartbeats are skipped while set (a stalled process).
    #[cfg(feature = "__test-hooks")]
    hold_heartbeats: std::sync::atomic::AtomicBool,
}

/// Aborts the task when dropped: the heartbeat task ends with the consumer's loop, also
/// when that is aborted.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Builds a [`Consumer`].
#[derive(Debug)]
pub struct ConsumerBuilder {
    store: Arc<dyn StreamStore>,
    stream: String,
    group: String,
    name: String,
    start: StartFrom,
    concurrency: usize,
    batch: usize,
    block: Duration,
    claim_after: Duration,
    claim_every: Duration,
    max_deliveries: u64,
    remove_idle: Option<Duration>,
}

impl ConsumerBuilder {
    /// The consumer's name in the group (default: random). A stable name lets a
    /// restarted process finish its own pending entries first.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Where the group starts if it has to be created (default: the beginning).
    pub fn start(mut self, start: StartFrom) -> Self {
        self.start = start;
        self
    }

    /// Handlers running at once (default 8, at most [`MAX_IDS`]).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Entries read per call (default 32, at most [`MAX_BATCH`]).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// How long a read waits for new entries (default 1 s; 1 ms to
    /// [`MAX_DURATION`](crate::MAX_DURATION)). Shutdown is noticed between reads, never by
    /// cancelling one.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// Entries pending this long with any consumer are claimed (default 30 s; 1 ms to
    /// [`MAX_DURATION`](crate::MAX_DURATION)): the visibility timeout, and the retry delay
    /// after a handler failure. A running handler keeps its entry from being claimed: a
    /// heartbeat task resets the idle time of the in-flight entries every
    /// `claim_after / 3`, whether handler slots are free or not and through the shutdown
    /// grace period (a consumer that dies stops doing so). A heartbeat touches only
    /// entries this consumer still holds: one claimed away while this consumer stalled
    /// stays with its new owner, and its handler here is reported in
    /// [`Report::lost`] instead of acknowledged.
    pub fn claim_after(mut self, d: Duration) -> Self {
        self.claim_after = d;
        self
    }

    /// How often to look for entries to claim (default 5 s; 1 ms to
    /// [`MAX_DURATION`](crate::MAX_DURATION)).
    pub fn claim_every(mut self, d: Duration) -> Self {
        self.claim_every = d;
        self
    }

    /// Deliveries after which a failing entry goes to the dead-letter stream (default 5,
    /// at least 1). Counted by Redis, so entries whose handler crashed the process count
    /// too; a restart re-reads its own backlog once, so each restart counts one.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n;
        self
    }

    /// At each claim round, removes the group's consumers idle this long (1 ms to
    /// [`MAX_DURATION`](crate::MAX_DURATION)) that hold nothing pending (consumers named
    /// per process start otherwise pile up). Off by default.
    pub fn remove_idle_consumers(mut self, idle: Duration) -> Self {
        self.remove_idle = Some(idle);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Consumer> {
        check_name("stream", &self.stream)?;
        check_name("group", &self.group)?;
        check_name("consumer", &self.name)?;
        if self.concurrency == 0 || self.concurrency > MAX_IDS {
            return Err(Error::InvalidArgument(format!(
                "a concurrency of {} is outside 1..={MAX_IDS}",
                self.concurrency
            )));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} is outside 1..={MAX_BATCH}",
                self.batch
            )));
        }
        if self.max_deliveries == 0 {
            return Err(Error::InvalidArgument(
                "max_deliveries must be at least 1".into(),
            ));
        }
        for (what, d) in [
            ("block", Some(self.block)),
            ("claim_after", Some(self.claim_after)),
            ("claim_every", Some(self.claim_every)),
            ("remove_idle_consumers", self.remove_idle),
        ] {
            let Some(d) = d else { continue };
            if d < Duration::from_millis(1) {
                return Err(Error::InvalidArgument(format!(
                    "{what} must be at least 1 ms"
                )));
            }
            check_duration(what, d)?;
        }
        Ok(Consumer {
            cfg: Arc::new(self),
            shared: Arc::new(Shared {
                in_flight: Arc::default(),
                runs: AtomicUsize::new(0),
                own: tokio::sync::Mutex::new(Some(String::from("0-0"))),
            }),
        })
    }
}

/// Runs a handler over a consumer group, at least once per entry. Clones are the same
/// consumer (one name): their runs share the in-flight entries and the own backlog.
#[derive(Clone)]
pub struct Consumer {
    cfg: Arc<ConsumerBuilder>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.cfg.stream)
            .field("group", &self.cfg.group)
            .field("name", &self.cfg.name)
            .finish()
    }
}

/// A running consumer.
#[derive(Debug)]
pub struct ConsumerHandle {
    cancel: CancellationToken,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<Report>,
}

impl ConsumerHandle {
    /// Stops reading, lets running handlers finish for up to `deadline` (heartbeats go
    /// on meanwhile, so their entries are not claimed; `Duration::MAX` waits for them
    /// all), then stops the rest (their entries stay pending for another consumer).
    /// Returns the report.
    pub async fn shutdown(self, deadline: Duration) -> Report {
        if let Ok(mut d) = self.control.deadline.lock() {
            *d = deadline;
        }
        self.cancel.cancel();
        self.task.await.unwrap_or_default()
    }

    /// Test hook: stops (`true`) or resumes the consumer's heartbeats, as if its process
    /// stalled while its handlers run.
    #[cfg(feature = "__test-hooks")]
    #[doc(hidden)]
    pub fn hold_heartbeats(&self, hold: bool) {
        self.control.hold_heartbeats.store(hold, Ordering::SeqCst);
    }

    /// Stops everything at once, as a crash would: entries being handled stay pending.
    pub fn abort(self) {
        self.task.abort();
    }
}

impl Consumer {
    /// A consumer of `group` on `stream`.
    pub fn builder(
        store: Arc<dyn StreamStore>,
        stream: impl Into<String>,
        group: impl Into<String>,
    ) -> ConsumerBuilder {
        let id = uuid::Uuid::new_v4().simple().to_string();
        ConsumerBuilder {
            store,
            stream: stream.into(),
            group: group.into(),
            name: format!("c-{}", &id[..12]),
            start: StartFrom::Beginning,
            concurrency: 8,
            batch: 32,
            block: Duration::from_secs(1),
            claim_after: Duration::from_secs(30),
            claim_every: Duration::from_secs(5),
            max_deliveries: 5,
            remove_idle: None,
        }
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Starts handling entries on the tokio runtime. The payload is the JSON in
    /// [`PAYLOAD_FIELD`]; an entry without one, or one that does not decode as `T`, goes
    /// straight to the dead-letter stream with the reason. Several runs of one consumer
    /// (or its clones) at once act as one consumer with their slots added up: no entry
    /// is started by two of them at once. Two processes must never run consumers of one
    /// name at once: the group cannot tell them apart.
    pub fn run<T, F, Fut, E>(&self, handler: F) -> ConsumerHandle
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let control = Arc::new(Control::default());
        let task = tokio::spawn(run_loop(
            self.cfg.clone(),
            self.shared.clone(),
            Arc::new(handler),
            cancel.clone(),
            control.clone(),
        ));
        ConsumerHandle {
            cancel,
            control,
            task,
        }
    }
}

async fn run_loop<T, F, Fut, E>(
    cfg: Arc<ConsumerBuilder>,
    shared: Arc<Shared>,
    handler: Arc<F>,
    cancel: CancellationToken,
    control: Arc<Control>,
) -> Report
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    // the first of the runs going on reads the own backlog from the start
    if shared.runs.fetch_add(1, Ordering::SeqCst) == 0 {
        *shared.own.lock().await = Some(String::from("0-0"));
    }
    let _run = RunGuard(shared.clone());
    let counters = Arc::new(Counters::default());
    // acks of concurrent handlers go out together: one XACK per batch of completions.
    // An entry not shown to be held since half of claim_after (its consumer stalled:
    // another may have claimed it) is acknowledged only if this consumer still holds
    // it; that check costs a command per entry on the server, so it is kept for them
    let acker: Arc<Acker> = {
        let cfg = cfg.clone();
        Arc::new(Coalescer::new(256, 2, move |acks: Vec<(String, bool)>| {
            let cfg = cfg.clone();
            async move {
                let store_error = |e| match e {
                    Error::Store(e) => e,
                    other => redkit_core::Error::invalid_argument(other.to_string()),
                };
                let checked = acks.iter().any(|(_, fresh)| !fresh);
                let ids: Vec<String> = acks.into_iter().map(|(id, _)| id).collect();
                if !checked {
                    cfg.store
                        .ack(&cfg.stream, &cfg.group, &ids)
                        .await
                        .map_err(store_error)?;
                    return Ok(vec![true; ids.len()]);
                }
                let refused = cfg
                    .store
                    .ack_owned(&cfg.stream, &cfg.group, &cfg.name, &ids)
                    .await
                    .map_err(store_error)?;
                Ok(ids.iter().map(|id| !refused.contains(id)).collect())
            }
        }))
    };
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut last_claim: Option<Instant> = None;
    let mut claim_cursor = String::from("0-0");
    let in_flight: InFlight = shared.in_flight.clone();
    // heartbeats in their own task: they go on while every slot is busy, while the loop
    // waits in a read, and through the shutdown grace period
    let heartbeat = AbortOnDrop(tokio::spawn(heartbeats(
        cfg.clone(),
        in_flight.clone(),
        counters.clone(),
        control.clone(),
    )));
    let mut group_ready = false;

    while !cancel.is_cancelled() {
        while let Some(r) = running.try_join_next() {
            joined(&counters, r);
        }
        // whatever this step reads or claims had its idle time reset after this instant
        let sent = Instant::now();
        let step: Result<Vec<Delivery>> = async {
            if !group_ready {
                cfg.store
                    .create_group(&cfg.stream, &cfg.group, cfg.start.clone())
                    .await?;
                group_ready = true;
            }
            let free = permits.available_permits().min(cfg.batch);
            if free == 0 {
                // every slot busy: wait for one, or for shutdown
                cancel.run_until_cancelled(permits.acquire()).await;
                return Ok(Vec::new());
            }
            let mut own_cursor = shared.own.lock().await;
            if let Some(after) = own_cursor.as_deref() {
                // the entries this consumer name held when it last stopped, read once:
                // the cursor moves past what was read, so an entry whose handler runs is
                // not read (and counted as a delivery) again
                let own = cfg
                    .store
                    .read_own_pending(&cfg.stream, &cfg.group, &cfg.name, after, free)
                    .await?;
                *own_cursor = (own.cursor != "0-0").then_some(own.cursor);
                return Ok(own.deliveries);
            }
            drop(own_cursor);
            if last_claim.is_none_or(|t| t.elapsed() >= cfg.claim_every) {
                last_claim = Some(Instant::now());
                if let Some(idle) = cfg.remove_idle {
                    let gone = cfg
                        .store
                        .remove_idle_consumers(&cfg.stream, &cfg.group, idle)
                        .await?;
                    if !gone.is_empty() {
                        tracing::debug!(consumers = ?gone, "removed idle consumers");
                    }
                }
                let claim = cfg
                    .store
                    .claim(
                        &cfg.stream,
                        &cfg.group,
                        &cfg.name,
                        cfg.claim_after,
                        free,
                        &claim_cursor,
                    )
                    .await?;
                // go on from where this scan stopped, so a long pending list is covered
                if claim.cursor != "0-0" {
                    last_claim = None;
                }
                claim_cursor = claim.cursor;
                let claimed = claim.deliveries;
                if !claimed.is_empty() {
                    tracing::debug!(count = claimed.len(), "claimed abandoned entries");
                    return Ok(claimed);
                }
            }
            // a busy stream is read on the shared connection; only an empty one waits on
            // a dedicated blocking read
            let ready = cfg
                .store
                .read_new(&cfg.stream, &cfg.group, &cfg.name, free, None)
                .await?;
            if !ready.is_empty() {
                return Ok(ready);
            }
            cfg.store
                .read_new(&cfg.stream, &cfg.group, &cfg.name, free, Some(cfg.block))
                .await
        }
        .await;
        match step {
            Ok(deliveries) => {
                backoff = Duration::from_millis(50);
                for d in deliveries {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        break;
                    };
                    let id = d.entry.id.clone();
                    {
                        let mut running_ids = flights(&in_flight);
                        if running_ids.contains_key(&id) {
                            // already running here (a claim took it back after a late
                            // heartbeat): never two handlers of one entry at once
                            tracing::debug!(%id, "entry already in flight; not started again");
                            continue;
                        }
                        running_ids.insert(
                            id.clone(),
                            Flight {
                                confirmed: sent,
                                lost: false,
                            },
                        );
                    }
                    let (cfg, handler, counters) = (cfg.clone(), handler.clone(), counters.clone());
                    let (acker, in_flight) = (acker.clone(), in_flight.clone());
                    running.spawn(async move {
                        // declared after the permit, so dropped before it
                        let _permit = permit;
                        let _landing = Landing {
                            in_flight: in_flight.clone(),
                            id,
                        };
                        handle(&cfg, &*handler, &counters, &acker, &in_flight, d).await;
                    });
                }
            }
            Err(e) => {
                if matches!(e, Error::NoGroup { .. }) {
                    group_ready = false;
                }
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, stream = %cfg.stream, "stream consumer step failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    // the grace period; the heartbeat task keeps the running handlers' entries
    let wait = control.deadline.lock().map(|d| *d).unwrap_or_default();
    let mut abandoned = 0;
    let grace = async {
        while let Some(r) = running.join_next().await {
            joined(&counters, r);
        }
    };
    if tokio::time::timeout(wait, grace).await.is_err() {
        abandoned = running.len() as u64;
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    drop(heartbeat);
    Report {
        processed: counters.processed.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        store_errors: counters.store_errors.load(Ordering::Relaxed),
        abandoned,
        lost: counters.lost.load(Ordering::Relaxed),
    }
}

/// Every `claim_after / 3`, one call resets the idle time of all in-flight entries this
/// consumer still holds; entries found claimed away are marked, so their handlers do
/// not acknowledge them.
async fn heartbeats(
    cfg: Arc<ConsumerBuilder>,
    in_flight: InFlight,
    counters: Arc<Counters>,
    #[cfg_attr(not(feature = "__test-hooks"), allow(unused_variables))] control: Arc<Control>,
) {
    // claim_after is at least 1 ms (checked at build), so the period is never zero
    let mut tick = tokio::time::interval(cfg.claim_after / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        #[cfg(feature = "__test-hooks")]
        if control.hold_heartbeats.load(Ordering::SeqCst) {
            continue;
        }
        let ids: Vec<String> = flights(&in_flight)
            .iter()
            .filter(|(_, f)| !f.lost)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        // in chunks, so one script call never holds the server long (an owner check per id)
        for ids in ids.chunks(HEARTBEAT_CHUNK) {
            // in a task of its own: a panic (in a store, say) fails this call and is
            // counted, instead of ending the heartbeats while the consumer goes on; the
            // guard stops the call with the heartbeats
            let (cfg, in_flight, counters2, ids) = (
                cfg.clone(),
                in_flight.clone(),
                counters.clone(),
                ids.to_vec(),
            );
            let mut call = AbortOnDrop(tokio::spawn(async move {
                heartbeat(&cfg, &in_flight, &counters2, &ids).await;
            }));
            if let Err(e) = (&mut call.0).await
                && e.is_panic()
            {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("a heartbeat call panicked; heartbeats go on");
            }
        }
    }
}

/// The most ids one heartbeat call carries.
const HEARTBEAT_CHUNK: usize = 500;

/// One heartbeat call: resets the idle time of the ids still held, marks the lost ones.
async fn heartbeat(
    cfg: &ConsumerBuilder,
    in_flight: &InFlight,
    counters: &Counters,
    ids: &[String],
) {
    let sent = Instant::now();
    match cfg
        .store
        .keep_alive(&cfg.stream, &cfg.group, &cfg.name, ids)
        .await
    {
        Ok(lost) => {
            let mut running = flights(in_flight);
            for id in ids {
                if let Some(f) = running.get_mut(id) {
                    f.confirmed = sent;
                }
            }
            if lost.is_empty() {
                return;
            }
            for id in &lost {
                if let Some(f) = running.get_mut(id) {
                    f.lost = true;
                }
            }
            tracing::warn!(
                count = lost.len(),
                stream = %cfg.stream,
                "entries of running handlers were claimed by another consumer; they will not be acknowledged here"
            );
        }
        Err(e) => {
            counters.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, stream = %cfg.stream, "heartbeat failed");
        }
    }
}

/// Acknowledges ids, each with whether it was shown to be held recently (else only if
/// still held); `false` for one it no longer holds.
type Acker = Coalescer<(String, bool), bool>;

/// Whether a heartbeat found the entry claimed away.
fn is_lost(in_flight: &InFlight, id: &str) -> bool {
    flights(in_flight).get(id).is_some_and(|f| f.lost)
}

/// Whether the entry was shown held by this consumer less than half the visibility
/// timeout ago: no other consumer claiming after the same `claim_after` can have taken
/// it since.
fn is_fresh(in_flight: &InFlight, id: &str, claim_after: Duration) -> bool {
    flights(in_flight)
        .get(id)
        .is_some_and(|f| f.confirmed.elapsed() < claim_after / 2)
}

async fn handle<T, F, Fut, E>(
    cfg: &ConsumerBuilder,
    handler: &F,
    counters: &Counters,
    acker: &Acker,
    in_flight: &InFlight,
    d: Delivery,
) where
    T: DeserializeOwned,
    F: Fn(Message<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let d = &d;
    let lost = || {
        counters.lost.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            id = %d.entry.id,
            "another consumer claimed this entry while its handler ran here; left with it, not acknowledged"
        );
    };
    let dead = |reason: String| async move {
        match cfg
            .store
            .dead_letter(&cfg.stream, &cfg.group, d, &reason)
            .await
        {
            Ok(_) => {
                counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(id = %d.entry.id, %reason, "entry moved to the dead-letter stream");
            }
            Err(e) => {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "dead-lettering failed; the entry stays pending");
            }
        }
    };
    if d.deliveries > cfg.max_deliveries {
        // delivered this often without an ack: its handler keeps crashing the process
        return dead(format!("delivered {} times without an ack", d.deliveries)).await;
    }
    let payload = match d.entry.field(PAYLOAD_FIELD) {
        None => return dead(format!("no `{PAYLOAD_FIELD}` field")).await,
        Some(json) => match serde_json::from_str::<T>(json) {
            Ok(p) => p,
            Err(e) => return dead(format!("undecodable payload: {e}")).await,
        },
    };
    let message = Message {
        id: d.entry.id.clone(),
        payload,
        deliveries: d.deliveries,
        fields: d.entry.fields.clone(),
    };
    match handler(message).await {
        Ok(()) if is_lost(in_flight, &d.entry.id) => lost(),
        Ok(()) => {
            // a fresh entry takes a plain XACK; a stale one only if still held
            let fresh = is_fresh(in_flight, &d.entry.id, cfg.claim_after);
            match acker.call((d.entry.id.clone(), fresh)).await {
                Ok(true) => {
                    counters.processed.fetch_add(1, Ordering::Relaxed);
                }
                // claimed away after the last heartbeat: the ack was refused
                Ok(false) => lost(),
                Err(e) => {
                    counters.store_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "ack failed; the entry will be delivered again");
                }
            }
        }
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            if d.deliveries >= cfg.max_deliveries {
                if is_lost(in_flight, &d.entry.id) {
                    // its new owner runs it: not ours to dead-letter
                    lost();
                } else if !is_fresh(in_flight, &d.entry.id, cfg.claim_after) {
                    // another consumer may have claimed it meanwhile (this one stalled):
                    // left pending; whoever claims it next finds it delivered more than
                    // max_deliveries times and dead-letters it without running it
                    tracing::warn!(
                        id = %d.entry.id,
                        error = %e,
                        "handler failed on the last delivery after a stall; left pending for the next claim to dead-letter"
                    );
                } else {
                    dead(format!("failed {} times, last: {e}", d.deliveries)).await;
                }
            } else {
                tracing::debug!(id = %d.entry.id, error = %e, "handler failed; retried after claim_after");
            }
        }
    }
}
