//! A consumer that runs a handler over a group's entries: batched blocking reads, a
//! concurrency limit, acks after success, claims of abandoned entries, dead letters.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redkit_core::Coalescer;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    Delivery, Error, Fields, MAX_BATCH, PAYLOAD_FIELD, Result, StartFrom, StreamStore, check_name,
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
}

#[derive(Debug, Default)]
struct Counters {
    processed: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    store_errors: AtomicU64,
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

    /// Handlers running at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Entries read per call (default 32).
    pub fn batch(mut self, n: usize) -> Self {
        self.batch = n;
        self
    }

    /// How long a read waits for new entries (default 1 s). Shutdown is noticed between
    /// reads, never by cancelling one.
    pub fn block(mut self, d: Duration) -> Self {
        self.block = d;
        self
    }

    /// Entries pending this long with any consumer are claimed (default 30 s): the
    /// visibility timeout, and the retry delay after a handler failure. A running handler
    /// keeps its entry from being claimed: the consumer resets the idle time of its
    /// in-flight entries every `claim_after / 3` (a consumer that dies stops doing so).
    pub fn claim_after(mut self, d: Duration) -> Self {
        self.claim_after = d;
        self
    }

    /// How often to look for entries to claim (default 5 s).
    pub fn claim_every(mut self, d: Duration) -> Self {
        self.claim_every = d;
        self
    }

    /// Deliveries after which a failing entry goes to the dead-letter stream (default 5).
    /// Counted by Redis, so entries whose handler crashed the process count too.
    pub fn max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n;
        self
    }

    /// At each claim round, removes the group's consumers idle this long that hold
    /// nothing pending (consumers named per process start otherwise pile up). Off by
    /// default.
    pub fn remove_idle_consumers(mut self, idle: Duration) -> Self {
        self.remove_idle = Some(idle);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<Consumer> {
        check_name("stream", &self.stream)?;
        check_name("group", &self.group)?;
        check_name("consumer", &self.name)?;
        if self.concurrency == 0 || self.concurrency > 10_000 {
            return Err(Error::InvalidArgument(format!(
                "a concurrency of {} is outside 1..=10000",
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
            ("block", self.block),
            ("claim_after", self.claim_after),
            ("claim_every", self.claim_every),
        ] {
            if d < Duration::from_millis(1) {
                return Err(Error::InvalidArgument(format!(
                    "{what} must be at least 1 ms"
                )));
            }
        }
        Ok(Consumer {
            cfg: Arc::new(self),
        })
    }
}

/// Runs a handler over a consumer group, at least once per entry.
#[derive(Clone)]
pub struct Consumer {
    cfg: Arc<ConsumerBuilder>,
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
    deadline: Arc<std::sync::Mutex<Duration>>,
    task: tokio::task::JoinHandle<Report>,
}

impl ConsumerHandle {
    /// Stops reading, lets running handlers finish for up to `deadline`, then stops the
    /// rest (their entries stay pending for another consumer). Returns the report.
    pub async fn shutdown(self, deadline: Duration) -> Report {
        if let Ok(mut d) = self.deadline.lock() {
            *d = deadline;
        }
        self.cancel.cancel();
        self.task.await.unwrap_or_default()
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
    /// straight to the dead-letter stream with the reason.
    pub fn run<T, F, Fut, E>(&self, handler: F) -> ConsumerHandle
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let cancel = CancellationToken::new();
        let deadline = Arc::new(std::sync::Mutex::new(Duration::ZERO));
        let task = tokio::spawn(run_loop(
            self.cfg.clone(),
            Arc::new(handler),
            cancel.clone(),
            deadline.clone(),
        ));
        ConsumerHandle {
            cancel,
            deadline,
            task,
        }
    }
}

async fn run_loop<T, F, Fut, E>(
    cfg: Arc<ConsumerBuilder>,
    handler: Arc<F>,
    cancel: CancellationToken,
    deadline: Arc<std::sync::Mutex<Duration>>,
) -> Report
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(Message<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let counters = Arc::new(Counters::default());
    // acks of concurrent handlers go out together: one XACK per batch of completions
    let acker: Arc<Acker> = {
        let cfg = cfg.clone();
        Arc::new(Coalescer::new(256, 2, move |ids: Vec<String>| {
            let cfg = cfg.clone();
            async move {
                cfg.store
                    .ack(&cfg.stream, &cfg.group, &ids)
                    .await
                    .map_err(|e| match e {
                        Error::Store(e) => e,
                        other => redkit_core::Error::invalid_argument(other.to_string()),
                    })?;
                Ok(vec![(); ids.len()])
            }
        }))
    };
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let mut running: JoinSet<()> = JoinSet::new();
    let mut backoff = Duration::from_millis(50);
    let mut last_claim: Option<Instant> = None;
    let mut own_drained = false;
    let mut claim_cursor = String::from("0-0");
    // entries whose handlers run: kept from being claimed while they do
    let in_flight: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Arc::default();
    let heartbeat_every = cfg.claim_after / 3;
    let mut last_heartbeat = Instant::now();
    let mut group_ready = false;

    while !cancel.is_cancelled() {
        while running.try_join_next().is_some() {}
        let step: Result<Vec<Delivery>> = async {
            if !group_ready {
                cfg.store
                    .create_group(&cfg.stream, &cfg.group, cfg.start.clone())
                    .await?;
                group_ready = true;
            }
            let free = permits.available_permits().min(cfg.batch);
            if free == 0 {
                // wait for a slot, but not past the next heartbeat
                let slot = permits.clone().acquire_owned();
                let _ = tokio::time::timeout(heartbeat_every, slot).await;
                return Ok(Vec::new());
            }
            if !own_drained {
                // entries this consumer name held when it last stopped
                let own = cfg
                    .store
                    .read_own_pending(&cfg.stream, &cfg.group, &cfg.name, free)
                    .await?;
                if own.is_empty() {
                    own_drained = true;
                }
                return Ok(own);
            }
            if last_heartbeat.elapsed() >= heartbeat_every {
                last_heartbeat = Instant::now();
                let ids: Vec<String> = in_flight
                    .lock()
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                cfg.store
                    .keep_alive(&cfg.stream, &cfg.group, &cfg.name, &ids)
                    .await?;
            }
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
            let block = cfg.block.min(heartbeat_every).max(Duration::from_millis(1));
            cfg.store
                .read_new(&cfg.stream, &cfg.group, &cfg.name, free, Some(block))
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
                    let (cfg, handler, counters) = (cfg.clone(), handler.clone(), counters.clone());
                    let acker = acker.clone();
                    let in_flight = in_flight.clone();
                    let id = d.entry.id.clone();
                    if let Ok(mut set) = in_flight.lock() {
                        set.insert(id.clone());
                    }
                    running.spawn(async move {
                        handle(&cfg, &*handler, &counters, &acker, d).await;
                        if let Ok(mut set) = in_flight.lock() {
                            set.remove(&id);
                        }
                        drop(permit);
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

    let wait = deadline.lock().map(|d| *d).unwrap_or_default();
    let mut abandoned = 0;
    if tokio::time::timeout(wait, async { while running.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        abandoned = running.len() as u64;
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    Report {
        processed: counters.processed.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        dead_lettered: counters.dead_lettered.load(Ordering::Relaxed),
        store_errors: counters.store_errors.load(Ordering::Relaxed),
        abandoned,
    }
}

type Acker = Coalescer<String, ()>;

async fn handle<T, F, Fut, E>(
    cfg: &ConsumerBuilder,
    handler: &F,
    counters: &Counters,
    acker: &Acker,
    d: Delivery,
) where
    T: DeserializeOwned,
    F: Fn(Message<T>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let d = &d;
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
        Ok(()) => match acker.call(d.entry.id.clone()).await {
            Ok(_) => {
                counters.processed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "ack failed; the entry will be delivered again");
            }
        },
        Err(e) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            if d.deliveries >= cfg.max_deliveries {
                dead(format!("failed {} times, last: {e}", d.deliveries)).await;
            } else {
                tracing::debug!(id = %d.entry.id, error = %e, "handler failed; retried after claim_after");
            }
        }
    }
}
