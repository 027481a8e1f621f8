//! Write-through and write-behind: what the cache hands to the system of record, and the
//! flusher that drains the write-behind log.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::watch;

use crate::core::Core;
use crate::store::Store;
use crate::{BoxError, Error, Result};

/// The position of a write in its key's history: the id of its record in the
/// write-behind log (a Redis stream id, `<ms>-<seq>`). Later writes to a key have larger
/// versions, so a writer can drop a redelivered older write (`… WHERE version < $v`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    ms: u64,
    seq: u64,
}

impl Version {
    pub(crate) fn new(ms: u64, seq: u64) -> Version {
        Version { ms, seq }
    }

    /// The milliseconds part (when the log took the write, on the server's clock).
    pub fn millis(&self) -> u64 {
        self.ms
    }

    /// The sequence within that millisecond.
    pub fn sequence(&self) -> u64 {
        self.seq
    }

    pub(crate) fn parse(id: &str) -> Option<Version> {
        let (ms, seq) = id.split_once('-')?;
        Some(Version {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::str::FromStr for Version {
    type Err = Error;

    /// Reads a version back from its text form (`<ms>-<seq>`, as a writer may store it).
    fn from_str(s: &str) -> Result<Version> {
        Version::parse(s).ok_or_else(|| Error::InvalidArgument(format!("not a version: {s:?}")))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One change for the system of record: a key's new value, or its removal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Write {
    /// The key as the cache's caller named it.
    pub key: String,
    /// The new value's bytes (JSON for the typed API); `None` removes the record.
    pub value: Option<Bytes>,
    /// The write's version (write-behind only; write-through writes run in line and have
    /// none).
    pub version: Option<Version>,
}

impl Write {
    /// A change (for writers' tests).
    pub fn new(key: impl Into<String>, value: Option<Bytes>, version: Option<Version>) -> Write {
        Write {
            key: key.into(),
            value,
            version,
        }
    }
}

/// The system of record behind a cache (a database): called with the cache's writes,
/// before the cache changes (write-through) or after, in batches (write-behind).
///
/// A batch succeeds or fails as a whole; make `write` idempotent: write-behind delivers
/// at least once (a batch whose acknowledgement was lost is delivered again), in version
/// order per key. Compare versions too (`… WHERE stored_version < $version`): a flusher
/// process that stops for longer than its lease between the lease renewal that precedes
/// a call and the call's commit can commit after the next owner wrote the same key.
#[async_trait]
pub trait Writer: Send + Sync + 'static {
    /// Applies the changes. In a write-behind batch each key appears once, with its
    /// newest write.
    async fn write(&self, writes: &[Write]) -> std::result::Result<(), BoxError>;
}

/// The writer a cache was configured with (printable in the configuration).
#[derive(Clone)]
pub(crate) struct WriterRef(pub(crate) Arc<dyn Writer>);

impl fmt::Debug for WriterRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Writer")
    }
}

/// Options of write-behind: batching, retries, sharding of the log and the flusher.
///
/// Writes go to the cache and to a durable log in Redis (one stream per shard, holding
/// the records not flushed yet) in one script; the flusher hands them to the [`Writer`]
/// in batches, coalesced to the newest write per key, and deletes them only after the
/// writer returned. One flusher at a time owns a shard (a lease), so writes reach the
/// writer in version order per key.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WriteBehind {
    pub(crate) batch: usize,
    pub(crate) interval: Duration,
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
    pub(crate) shards: u16,
    pub(crate) lease: Duration,
    pub(crate) flusher: bool,
}

impl Default for WriteBehind {
    fn default() -> Self {
        Self::new()
    }
}

/// The longest pause between two attempts of a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl WriteBehind {
    /// Defaults: batches of up to 256 log records, the log polled every 100 ms when idle,
    /// 5 attempts per batch with backoff from 200 ms, one shard, a 10 s lease, and a
    /// flusher in every handle.
    pub fn new() -> Self {
        WriteBehind {
            batch: 256,
            interval: Duration::from_millis(100),
            attempts: 5,
            backoff: Duration::from_millis(200),
            shards: 1,
            lease: Duration::from_secs(10),
            flusher: true,
        }
    }

    /// The most log records read for one writer call (coalescing can make the call
    /// smaller).
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch = records;
        self
    }

    /// How long an idle flusher waits before it looks at the log again; a write is
    /// flushed within about this long when the writer keeps up.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many times a failing batch is tried (waiting `backoff`, doubled each time, at
    /// most 30 s, with jitter) before each of its writes is tried alone once more and
    /// the ones that still fail become dead writes ([`crate::RedisCache::dead_writes`]).
    pub fn retry(mut self, attempts: u32, backoff: Duration) -> Self {
        self.attempts = attempts;
        self.backoff = backoff;
        self
    }

    /// How many logs the writes are spread over, by key (default 1). Every key of one
    /// log shares its hash tag, entries included, so on a cluster the write-behind
    /// namespace lives on `shards` slots; raise it to spread the load. Every handle of a
    /// namespace must use the same number.
    pub fn shards(mut self, shards: u16) -> Self {
        self.shards = shards;
        self
    }

    /// How long a flusher owns a shard without renewing (renewed every third of it). A
    /// flusher that dies stops renewing; another takes the shard over after this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Whether this handle runs a flusher (default true). Handles that only write can
    /// leave flushing to others.
    pub fn flusher(mut self, run: bool) -> Self {
        self.flusher = run;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_string()));
        if self.batch == 0 || self.batch > 4096 {
            return bad("the write-behind batch size must be in 1..=4096");
        }
        if self.interval.is_zero() || self.interval > Duration::from_secs(3600) {
            return bad("the write-behind interval must be in (0, 1 h]");
        }
        if self.attempts == 0 {
            return bad("write-behind needs at least one attempt per batch");
        }
        if self.backoff > MAX_BACKOFF {
            return bad("the write-behind backoff must be at most 30 s");
        }
        if self.shards == 0 || self.shards > 1024 {
            return bad("write-behind shards must be in 1..=1024");
        }
        if self.lease < Duration::from_millis(30) || self.lease > Duration::from_secs(3600) {
            return bad("the write-behind lease must be in 30 ms..=1 h");
        }
        Ok(())
    }
}

/// A write the flusher gave up on, kept in the dead-letter log with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadWrite {
    /// The write (with its version).
    pub write: Write,
    /// The writer's last error.
    pub error: String,
    /// How many times it was tried.
    pub attempts: u32,
}

/// What a graceful shutdown of a write-behind cache left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushReport {
    /// Records still in the logs: those of shards another flusher owns, or left when the
    /// deadline passed. They are durable and flushed by the next flusher.
    pub pending: u64,
    /// Whether this handle's flusher finished its shards before the deadline.
    pub drained: bool,
}

/// Counters of the write paths.
#[derive(Debug, Default)]
pub(crate) struct WriteCounters {
    pub(crate) flushed: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) retries: AtomicU64,
}

/// Which shard of `shards` a key's writes go to (the same on every handle).
pub(crate) fn shard_of(key: &str, shards: u16) -> u16 {
    redkit_core::key_slot(key.as_bytes()) % shards
}

/// The state of a flusher: its task, its stop signal.
#[derive(Debug)]
pub(crate) struct Flusher {
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }
}

/// Starts a flusher for `core` (which it holds weakly: dropping the last handle stops it).
pub(crate) fn start<S: Store>(core: &Arc<Core<S>>, options: WriteBehind) -> Flusher {
    let (stop, stopped) = watch::channel(false);
    let wake = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(run(
        Arc::downgrade(core),
        options,
        stopped,
        Arc::clone(&wake),
    ));
    Flusher {
        stop,
        wake,
        task: std::sync::Mutex::new(Some(task)),
    }
}

/// What the flusher knows of one shard.
#[derive(Debug, Clone, Copy, Default)]
struct Shard {
    held: bool,
}

async fn run<S: Store>(
    core: Weak<Core<S>>,
    options: WriteBehind,
    mut stop: watch::Receiver<bool>,
    wake: Arc<tokio::sync::Notify>,
) {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut shards = vec![Shard::default(); usize::from(options.shards)];
    loop {
        let stopping = *stop.borrow_and_update();
        let Some(c) = core.upgrade() else { return };
        let mut busy = false;
        for (i, shard) in shards.iter_mut().enumerate() {
            let i = u16::try_from(i).unwrap_or(u16::MAX);
            match pass(&c, &options, &token, i, shard).await {
                Ok(more) => busy |= more,
                Err(e) => {
                    tracing::warn!(shard = i, error = %e, "write-behind flush failed; retrying");
                    *shard = Shard::default();
                }
            }
        }
        if stopping && !busy {
            for (i, _) in shards.iter().enumerate().filter(|(_, s)| s.held) {
                let i = u16::try_from(i).unwrap_or(u16::MAX);
                if let Err(e) = c.store.release(i, &token).await {
                    tracing::debug!(shard = i, error = %e, "could not release a flush lease");
                }
            }
            return;
        }
        drop(c);
        if !busy {
            tokio::select! {
                _ = tokio::time::sleep(options.interval) => {}
                _ = stop.changed() => {}
                _ = wake.notified() => {}
            }
        }
    }
}

/// One look at a shard: takes or renews its lease, flushes one batch. Whether it found
/// anything (then it looks again at once; a shutdown drains until nothing is found).
async fn pass<S: Store>(
    core: &Core<S>,
    options: &WriteBehind,
    token: &str,
    i: u16,
    shard: &mut Shard,
) -> Result<bool> {
    let renewed_at = std::time::Instant::now();
    if !core.store.lease(i, token, options.lease).await? {
        *shard = Shard::default();
        return Ok(false);
    }
    if !shard.held {
        tracing::debug!(shard = i, "write-behind shard taken over");
        shard.held = true;
    }
    pause!(core.config, "flusher:before-read");
    // the log holds only what is not flushed yet: a read delivers nothing to anyone, so
    // what a flusher read and did not settle is simply read again by the next owner
    let records = core.store.read_log(i, options.batch).await?;
    pause!(core.config, "flusher:after-read");
    if records.is_empty() {
        return Ok(false);
    }
    pause!(core.config, "flusher:before-write");
    if !flush(core, options, token, i, records, renewed_at).await? {
        tracing::warn!(shard = i, "write-behind lease lost during a flush");
        *shard = Shard::default();
        return Ok(false);
    }
    Ok(true)
}

/// Runs `work` while renewing the shard's lease (renewal only: a lost lease is never
/// taken back here); `None` when the lease was lost, and then `work` was dropped where
/// it was, so a deposed flusher stops calling its writer.
async fn leased<S: Store, F: Future>(
    core: &Core<S>,
    options: &WriteBehind,
    token: &str,
    i: u16,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(options.lease / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return Some(out),
            _ = tick.tick() => {
                if !matches!(core.store.renew(i, token, options.lease).await, Ok(true)) {
                    return None;
                }
            }
        }
    }
}

/// What became of the writer calls for one batch.
enum Tried {
    /// The writer took the batch.
    Done,
    /// The writer kept failing.
    Failed(BoxError),
    /// The lease was lost before a call: the writer was not called again.
    Lost,
}

/// One writer call, made only after the shard's lease was renewed (not taken back): a
/// flusher that lost its lease while it waited does not write. What is left is a pause
/// of the whole process longer than the lease between that renewal and the writer's
/// commit (see the README); a writer comparing versions makes it harmless.
async fn fenced<S: Store>(
    core: &Core<S>,
    options: &WriteBehind,
    token: &str,
    i: u16,
    writer: &Arc<dyn Writer>,
    batch: &[Write],
) -> Option<std::result::Result<(), BoxError>> {
    if !matches!(core.store.renew(i, token, options.lease).await, Ok(true)) {
        return None;
    }
    Some(call(writer, batch).await)
}

/// Hands one batch of records to the writer (newest per key), with retries; settles
/// them (acknowledged or dead). False when the lease was lost.
async fn flush<S: Store>(
    core: &Core<S>,
    options: &WriteBehind,
    token: &str,
    i: u16,
    records: Vec<Write>,
    renewed_at: std::time::Instant,
) -> Result<bool> {
    let Some(writer) = core.writer() else {
        return Ok(true);
    };
    let versions: Vec<_> = records.iter().filter_map(|r| r.version).collect();
    // records come in version order: the last of a key is its newest
    let mut newest: HashMap<&str, usize> = HashMap::with_capacity(records.len());
    for (n, r) in records.iter().enumerate() {
        newest.insert(r.key.as_str(), n);
    }
    let batch: Vec<Write> = records
        .iter()
        .enumerate()
        .filter(|(n, r)| newest.get(r.key.as_str()) == Some(n))
        .map(|(_, r)| r.clone())
        .collect();
    let counters = core.write_counters();
    let tried = leased(
        core,
        options,
        token,
        i,
        attempt(core, writer, options, token, i, &batch, renewed_at),
    )
    .await;
    let dead = match tried {
        None | Some(Tried::Lost) => return Ok(false),
        Some(Tried::Done) => Vec::new(),
        Some(Tried::Failed(_)) if batch.len() > 1 => {
            // the batch keeps failing: find the writes that fail alone
            let mut dead = Vec::new();
            for w in &batch {
                let one = std::slice::from_ref(w);
                let r = leased(
                    core,
                    options,
                    token,
                    i,
                    fenced(core, options, token, i, writer, one),
                );
                let Some(Some(r)) = r.await else {
                    return Ok(false);
                };
                if let Err(e) = r {
                    dead.push(DeadWrite {
                        write: w.clone(),
                        error: e.to_string(),
                        attempts: options.attempts.saturating_add(1),
                    });
                }
            }
            dead
        }
        Some(Tried::Failed(e)) => batch
            .iter()
            .map(|w| DeadWrite {
                write: w.clone(),
                error: e.to_string(),
                attempts: options.attempts,
            })
            .collect(),
    };
    for d in &dead {
        tracing::error!(
            key = d.write.key,
            error = d.error,
            "write-behind write dead-lettered"
        );
    }
    if !core.store.settle(i, token, &versions, &dead).await? {
        return Ok(false);
    }
    counters
        .coalesced
        .fetch_add((records.len() - batch.len()) as u64, Ordering::Relaxed);
    counters
        .flushed
        .fetch_add((batch.len() - dead.len()) as u64, Ordering::Relaxed);
    counters
        .dead
        .fetch_add(dead.len() as u64, Ordering::Relaxed);
    Ok(true)
}

/// One writer call; a panic is a failure like any other (the flusher lives on).
async fn call(writer: &Arc<dyn Writer>, batch: &[Write]) -> std::result::Result<(), BoxError> {
    match AssertUnwindSafe(writer.write(batch)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err("the writer panicked".into()),
    }
}

/// Calls the writer up to `attempts` times with exponential backoff and jitter, each
/// call right after a renewal of the lease: the first one, when it comes within a
/// quarter of the lease of the pass's renewal, after that one; the others after
/// [`fenced`]'s.
async fn attempt<S: Store>(
    core: &Core<S>,
    writer: &Arc<dyn Writer>,
    options: &WriteBehind,
    token: &str,
    i: u16,
    batch: &[Write],
    renewed_at: std::time::Instant,
) -> Tried {
    let mut pause = options.backoff.min(MAX_BACKOFF);
    let mut n: u32 = 1;
    loop {
        // the pass renewed the lease just before the read: a first call made soon after
        // needs no other renewal (one that comes late, after a pause, does)
        let tried = if n == 1 && renewed_at.elapsed() < options.lease / 4 {
            Some(call(writer, batch).await)
        } else {
            fenced(core, options, token, i, writer, batch).await
        };
        match tried {
            None => return Tried::Lost,
            Some(Ok(())) => return Tried::Done,
            Some(Err(e)) if n >= options.attempts => return Tried::Failed(e),
            Some(Err(e)) => {
                core.write_counters()
                    .retries
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(attempt = n, writes = batch.len(), error = %e, "write-behind batch failed; retrying");
                tokio::time::sleep(pause.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
                pause = pause.saturating_mul(2).min(MAX_BACKOFF);
                n = n.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_like_stream_ids() {
        let a = Version::parse("1700000000000-2").unwrap();
        let b = Version::parse("1700000000000-10").unwrap();
        let c = Version::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
        assert_eq!(Version::parse("nope"), None);
        assert_eq!(Version::parse("1-x"), None);
    }

    #[test]
    fn bad_options_are_config_errors() {
        assert!(WriteBehind::new().validate().is_ok());
        for bad in [
            WriteBehind::new().batch_size(0),
            WriteBehind::new().interval(Duration::ZERO),
            WriteBehind::new().retry(0, Duration::ZERO),
            WriteBehind::new().shards(0),
            WriteBehind::new().lease(Duration::ZERO),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }
}
