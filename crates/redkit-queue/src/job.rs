//! Jobs: options, what a queue stores per job (the envelope), and what it hands out.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::{Error, Result};

/// The longest custom job id or unique key, in bytes.
pub const MAX_ID_LEN: usize = 512;

/// A job's id: a decimal number the queue assigned, or the caller's own (which must not
/// be a plain number, so the two never collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub(crate) String);

impl JobId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A custom id, checked: non-empty, at most [`MAX_ID_LEN`] bytes, no braces or control
    /// characters, and not all digits (numbers are the queue's own ids).
    pub fn custom(id: impl Into<String>) -> Result<JobId> {
        let id = id.into();
        check_name("job id", &id)?;
        if id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidArgument(format!(
                "custom job id {id:?} is a number; numbers are reserved for generated ids"
            )));
        }
        Ok(JobId(id))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks an id or key: non-empty, bounded, no braces (hash tags) or control characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("empty {what}")));
    }
    if name.len() > MAX_ID_LEN {
        return Err(Error::InvalidArgument(format!(
            "{what} of {} bytes, over the limit of {MAX_ID_LEN}",
            name.len()
        )));
    }
    if name.contains(['{', '}']) || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "{what} {name:?} has braces or control characters"
        )));
    }
    Ok(())
}

/// Which ready jobs run first: every job of a higher priority before any of a lower one,
/// first in first out within one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Priority {
    /// Before everything else.
    Critical,
    /// Before normal jobs.
    High,
    /// The default.
    #[default]
    Normal,
    /// After everything else.
    Low,
}

impl Priority {
    pub(crate) fn level(self) -> u8 {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }

    pub(crate) fn from_level(level: u8) -> Option<Priority> {
        Some(match level {
            0 => Priority::Critical,
            1 => Priority::High,
            2 => Priority::Normal,
            3 => Priority::Low,
            _ => return None,
        })
    }
}

/// How long a failed job waits before its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backoff {
    /// The same wait every time.
    Fixed(Duration),
    /// `base × 2^(attempt − 1)`, at most `max`.
    Exponential {
        /// The first wait.
        base: Duration,
        /// The longest wait.
        max: Duration,
    },
}

impl Backoff {
    /// The wait after the `attempt`-th failure (1-based), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Exponential { base, max } => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
                base.saturating_mul(factor).min(max)
            }
        }
    }
}

/// How a job is kept from being enqueued twice.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unique {
    /// A second job with this key is a duplicate while the first one is waiting, delayed
    /// or running (until it completes or dies).
    UntilFinished(String),
    /// A second job with this key is a duplicate for this long after the first was
    /// enqueued, whatever became of it (throttling).
    For(String, Duration),
}

impl Unique {
    pub(crate) fn key(&self) -> &str {
        match self {
            Unique::UntilFinished(k) | Unique::For(k, _) => k,
        }
    }
}

/// Options of one job; unset fields take the queue's defaults.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct JobOptions {
    pub(crate) priority: Priority,
    pub(crate) delay: Option<Duration>,
    pub(crate) run_at: Option<SystemTime>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) jitter: Option<f64>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) unique: Option<Unique>,
    pub(crate) id: Option<String>,
}

impl JobOptions {
    /// The queue's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The job's priority (default [`Priority::Normal`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Run no sooner than `delay` from now (on the server's clock).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Run no sooner than `at` (turned into a delay from now on this machine's clock).
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// How many times the job may run before it is dead (failures and stalls both count).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// The wait between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Shortens or lengthens each backoff by a random share of up to `fraction` (0..=1).
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = Some(fraction);
        self
    }

    /// How long one run may take; a run that takes longer fails with a timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Deduplication: see [`Unique`].
    pub fn unique(mut self, unique: Unique) -> Self {
        self.unique = Some(unique);
        self
    }

    /// The job's own id (idempotent enqueue: a second job with a live id is a duplicate).
    /// Not all digits: see [`JobId::custom`].
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A job to enqueue: its payload's bytes and options.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewJob {
    /// The payload (JSON for the typed API).
    pub payload: Bytes,
    /// Its options.
    pub options: JobOptions,
}

impl NewJob {
    /// A job with these bytes and options.
    pub fn new(payload: impl Into<Bytes>, options: JobOptions) -> NewJob {
        NewJob {
            payload: payload.into(),
            options,
        }
    }
}

/// What became of an enqueued job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Enqueued {
    /// Added under this id.
    Added(JobId),
    /// A job with the same custom id or unique key is live: this one was not added.
    Duplicate(JobId),
}

impl Enqueued {
    /// The id of the job that holds the place (new or existing).
    pub fn id(&self) -> &JobId {
        match self {
            Enqueued::Added(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// Proof of one delivery of a job: only its holder can complete, fail, extend or hand back
/// that job, and only while the lease lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub(crate) id: JobId,
    pub(crate) token: String,
    pub(crate) unique: Option<String>,
}

impl Lease {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.id
    }
}

/// A delivered job: its lease, payload and history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Delivery {
    /// The lease this delivery holds.
    pub lease: Lease,
    /// The payload's bytes.
    pub payload: Bytes,
    /// Which attempt this is (1 for the first run).
    pub attempt: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// Times an earlier run stalled (its worker died or lost the lease).
    pub stalls: u32,
    /// The job's priority.
    pub priority: Priority,
    /// When it was enqueued.
    pub enqueued_at: SystemTime,
    /// How long one run may take.
    pub timeout: Option<Duration>,
    /// The wait before a retry.
    pub backoff: Backoff,
    /// Jitter share of the backoff.
    pub jitter: f64,
}

impl Delivery {
    /// The job's id.
    pub fn id(&self) -> &JobId {
        &self.lease.id
    }

    /// The wait before the next attempt after this one failed, jitter applied.
    pub fn retry_delay(&self) -> Duration {
        let d = self.backoff.delay(self.attempt);
        if self.jitter <= 0.0 {
            return d;
        }
        let share = (fastrand::f64() * 2.0 - 1.0) * self.jitter.min(1.0);
        // checked: a share of a very long wait must not overflow
        Duration::try_from_secs_f64(d.as_secs_f64() * (1.0 + share).max(0.0)).unwrap_or(d)
    }

    /// Whether this attempt was the last one allowed.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobState {
    /// Ready to run.
    Waiting,
    /// Scheduled for later.
    Delayed,
    /// Leased to a worker.
    Active,
    /// Finished (kept only with completed-job retention).
    Completed,
    /// Failed, waiting for its next attempt.
    Failed,
    /// Out of attempts (or undecodable): kept in the dead set with its error.
    Dead,
}

/// What a queue knows of one job.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobInfo {
    /// The job's id.
    pub id: JobId,
    /// Its state.
    pub state: JobState,
    /// Its payload's bytes.
    pub payload: Bytes,
    /// Failed or stalled runs so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Its priority.
    pub priority: Priority,
    /// When it was enqueued.
    pub enqueued_at: SystemTime,
    /// The last error (failed and dead jobs).
    pub error: Option<String>,
    /// The result (completed jobs that were kept).
    pub result: Option<Bytes>,
    /// The last progress reported by a run (see `Job::progress`); kept until the job is
    /// deleted, cleared when a dead job is retried. Filled by [`crate::Queue::job`] only.
    pub progress: Option<Bytes>,
}

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Ready to run (places in line of removed jobs that no fetch passed yet included).
    pub waiting: u64,
    /// Scheduled for later, retries included.
    pub delayed: u64,
    /// Leased to workers.
    pub active: u64,
    /// Completed and kept.
    pub completed: u64,
    /// Dead.
    pub dead: u64,
    /// Whether fetching is paused.
    pub paused: bool,
}

/// The stored form of a job: a fixed header, the unique key, the payload.
///
/// ```text
/// 0  u8   format (1)
/// 1  u16  attempts made (failed or stalled runs)      ┐ changed in place by the
/// 3  u16  stalls                                       ┘ scripts (big endian)
/// 5  u16  max attempts
/// 7  u8   priority level (0 first)
/// 8  u64  enqueued at, unix ms
/// 16 u32  timeout ms (0: none)
/// 20 u8   backoff kind (0 fixed, 1 exponential)
/// 21 u8   jitter, percent
/// 22 u32  backoff base ms
/// 26 u32  backoff max ms
/// 30 u8   unique mode (0 none, 1 until finished, 2 for a time)
/// 31 u16  unique key length, then the key, then the payload
/// ```
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub(crate) attempts: u16,
    pub(crate) stalls: u16,
    pub(crate) max_attempts: u16,
    pub(crate) priority: Priority,
    pub(crate) enqueued_ms: u64,
    pub(crate) timeout_ms: u32,
    pub(crate) backoff: Backoff,
    pub(crate) jitter_pct: u8,
    pub(crate) unique: Option<(u8, String)>,
    pub(crate) payload: Bytes,
}

const FORMAT: u8 = 1;
pub(crate) const HEADER: usize = 33;

fn ms32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let unique = self.unique.as_ref().map_or(&[][..], |(_, k)| k.as_bytes());
        let mut out = Vec::with_capacity(HEADER + unique.len() + self.payload.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.attempts.to_be_bytes());
        out.extend_from_slice(&self.stalls.to_be_bytes());
        out.extend_from_slice(&self.max_attempts.to_be_bytes());
        out.push(self.priority.level());
        out.extend_from_slice(&self.enqueued_ms.to_be_bytes());
        out.extend_from_slice(&self.timeout_ms.to_be_bytes());
        let (kind, base, max) = match self.backoff {
            Backoff::Fixed(d) => (0u8, ms32(d), ms32(d)),
            Backoff::Exponential { base, max } => (1u8, ms32(base), ms32(max)),
        };
        out.push(kind);
        out.push(self.jitter_pct);
        out.extend_from_slice(&base.to_be_bytes());
        out.extend_from_slice(&max.to_be_bytes());
        out.push(self.unique.as_ref().map_or(0, |(m, _)| *m));
        let len = u16::try_from(unique.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&unique[..usize::from(len)]);
        out.extend_from_slice(&self.payload);
        out
    }

    pub(crate) fn decode(bytes: Bytes) -> Result<Envelope> {
        let bad = |why: &str| Error::Corrupt(format!("job envelope: {why}"));
        if bytes.len() < HEADER {
            return Err(bad("too short"));
        }
        if bytes[0] != FORMAT {
            return Err(bad("unknown format"));
        }
        let u16_at = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&bytes[8..16]);
        let priority = Priority::from_level(bytes[7]).ok_or_else(|| bad("priority"))?;
        let (base, max) = (
            Duration::from_millis(u64::from(u32_at(22))),
            Duration::from_millis(u64::from(u32_at(26))),
        );
        let backoff = match bytes[20] {
            0 => Backoff::Fixed(base),
            1 => Backoff::Exponential { base, max },
            _ => return Err(bad("backoff kind")),
        };
        let len = usize::from(u16_at(31));
        if bytes.len() < HEADER + len {
            return Err(bad("unique key past the end"));
        }
        let unique = match bytes[30] {
            0 => None,
            m @ (1 | 2) => Some((
                m,
                String::from_utf8(bytes[HEADER..HEADER + len].to_vec())
                    .map_err(|_| bad("unique key is not UTF-8"))?,
            )),
            _ => return Err(bad("unique mode")),
        };
        Ok(Envelope {
            attempts: u16_at(1),
            stalls: u16_at(3),
            max_attempts: u16_at(5),
            priority,
            enqueued_ms: u64::from_be_bytes(ms),
            timeout_ms: u32_at(16),
            backoff,
            jitter_pct: bytes[21],
            unique,
            payload: bytes.slice(HEADER + len..),
        })
    }

    pub(crate) fn enqueued_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.enqueued_ms)
    }

    pub(crate) fn delivery(self, id: JobId, token: String) -> Delivery {
        Delivery {
            enqueued_at: self.enqueued_at(),
            lease: Lease {
                id,
                token,
                // a key held until the job finishes is given back when it does; a
                // time-bound one runs out on its own
                unique: self.unique.filter(|(mode, _)| *mode == 1).map(|(_, k)| k),
            },
            attempt: u32::from(self.attempts) + 1,
            max_attempts: u32::from(self.max_attempts),
            stalls: u32::from(self.stalls),
            priority: self.priority,
            timeout: (self.timeout_ms > 0)
                .then(|| Duration::from_millis(u64::from(self.timeout_ms))),
            backoff: self.backoff,
            jitter: f64::from(self.jitter_pct) / 100.0,
            payload: self.payload,
        }
    }

    pub(crate) fn info(
        self,
        id: JobId,
        state: JobState,
        error: Option<String>,
        result: Option<Bytes>,
    ) -> JobInfo {
        JobInfo {
            id,
            state,
            attempts: u32::from(self.attempts),
            max_attempts: u32::from(self.max_attempts),
            priority: self.priority,
            enqueued_at: self.enqueued_at(),
            error,
            result,
            progress: None,
            payload: self.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let e = Envelope {
            attempts: 2,
            stalls: 1,
            max_attempts: 5,
            priority: Priority::High,
            enqueued_ms: 1_700_000_000_123,
            timeout_ms: 30_000,
            backoff: Backoff::Exponential {
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            jitter_pct: 20,
            unique: Some((1, "order:7".into())),
            payload: Bytes::from_static(b"{\"x\":1}"),
        };
        let bytes = e.encode();
        // the scripts read these offsets
        assert_eq!(&bytes[1..3], &2u16.to_be_bytes());
        assert_eq!(&bytes[5..7], &5u16.to_be_bytes());
        assert_eq!(bytes[7], 1);
        assert_eq!(Envelope::decode(Bytes::from(bytes)).unwrap(), e);
        assert!(Envelope::decode(Bytes::from_static(b"short")).is_err());
        let mut bad = e.encode();
        bad[7] = 9;
        assert!(Envelope::decode(Bytes::from(bad)).is_err());
        let mut cut = e.encode();
        cut.truncate(HEADER + 2);
        assert!(Envelope::decode(Bytes::from(cut)).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(3), Duration::from_millis(400));
        assert_eq!(b.delay(40), Duration::from_secs(1));
        assert_eq!(
            Backoff::Fixed(Duration::from_secs(2)).delay(9),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn a_retry_delay_of_a_very_long_backoff_does_not_overflow() {
        let e = Envelope {
            attempts: 0,
            stalls: 0,
            max_attempts: 3,
            priority: Priority::Normal,
            enqueued_ms: 0,
            timeout_ms: 0,
            backoff: Backoff::Fixed(Duration::from_secs(1)),
            jitter_pct: 100,
            unique: None,
            payload: Bytes::new(),
        };
        let mut d = e.delivery(JobId("1".into()), "t".into());
        d.backoff = Backoff::Fixed(Duration::MAX);
        for _ in 0..100 {
            let _ = d.retry_delay();
        }
    }

    #[test]
    fn custom_ids_are_checked() {
        assert!(JobId::custom("order-7").is_ok());
        for bad in ["", "123", "a{b}", "a\nb"] {
            assert!(JobId::custom(bad).is_err(), "{bad:?}");
        }
        assert!(JobId::custom("x".repeat(MAX_ID_LEN + 1)).is_err());
    }
}
