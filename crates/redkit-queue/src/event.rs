//! The event stream of a queue: what happened to its jobs, readable from any process.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::{Error, JobId, Queue, Result};

/// A position in a queue's event stream: `<ms>-<n>`, ordered by time of recording.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(pub(crate) String);

impl EventId {
    /// Before every event: reading after it starts at the oldest event kept.
    pub fn start() -> EventId {
        EventId("0-0".into())
    }

    /// An id read back from [`EventId::as_str`] (`<ms>-<n>`, both unsigned integers).
    pub fn parse(id: &str) -> Result<EventId> {
        Self::split(id)
            .map(|_| EventId(id.to_string()))
            .ok_or_else(|| Error::InvalidArgument(format!("{id:?} is not an event id")))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the event was recorded (server time).
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(Self::split(&self.0).map_or(0, |(ms, _)| ms))
    }

    pub(crate) fn split(id: &str) -> Option<(u64, u64)> {
        let (ms, n) = id.split_once('-')?;
        Some((ms.parse().ok()?, n.parse().ok()?))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A run succeeded.
    Completed,
    /// A run failed; the job will be retried (`detail`: the error).
    Failed,
    /// The job ran out of attempts or could not be decoded (`detail`: the error).
    Dead,
    /// A lease ran out and the job went back to the queue (`detail`: the reason).
    Stalled,
    /// A running job reported progress (`detail`: what it reported).
    Progress,
}

impl EventKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Dead => "dead",
            EventKind::Stalled => "stalled",
            EventKind::Progress => "progress",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<EventKind> {
        Some(match name {
            "completed" => EventKind::Completed,
            "failed" => EventKind::Failed,
            "dead" => EventKind::Dead,
            "stalled" => EventKind::Stalled,
            "progress" => EventKind::Progress,
            _ => return None,
        })
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// Its position in the stream (and its time).
    pub id: EventId,
    /// What happened.
    pub kind: EventKind,
    /// To which job.
    pub job: JobId,
    /// The error of `Failed`, `Dead` and `Stalled`, the report of `Progress` (empty
    /// otherwise).
    pub detail: Bytes,
}

impl Event {
    /// The error of a `Failed`, `Dead` or `Stalled` event.
    pub fn error(&self) -> Option<&str> {
        match self.kind {
            EventKind::Failed | EventKind::Dead | EventKind::Stalled => {
                std::str::from_utf8(&self.detail).ok()
            }
            _ => None,
        }
    }

    /// The report of a `Progress` event, decoded from JSON (see `Job::progress`).
    pub fn progress<T: DeserializeOwned>(&self) -> Result<T> {
        if self.kind != EventKind::Progress {
            return Err(Error::InvalidArgument(format!(
                "a {} event carries no progress",
                self.kind.name()
            )));
        }
        serde_json::from_slice(&self.detail).map_err(|e| Error::Codec(e.to_string()))
    }
}

/// Where an [`EventStream`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// The oldest event kept.
    Oldest,
    /// The first event recorded after the stream's first read (it resolves the newest
    /// id then, once).
    Now,
    /// The first event after this one (to resume where a reader stopped).
    After(EventId),
}

type Read = BoxFuture<'static, Result<(EventId, Vec<Event>)>>;

/// A queue's events as a [`Stream`]: reads in batches, blocks (on Redis, `XREAD BLOCK` on
/// a pooled connection) while nothing new is there, never ends on its own. An error is
/// yielded once and the next poll reads again from the same position.
///
/// Events are a record, not a delivery guarantee: the stream is trimmed to about
/// [`crate::QueueConfig::events`] entries, so a reader that falls further behind skips
/// the trimmed ones. Use the ids to resume.
pub struct EventStream {
    queue: Arc<dyn Queue>,
    start: Option<StartAt>,
    after: EventId,
    batch: usize,
    wait: Duration,
    buffer: std::collections::VecDeque<Event>,
    read: Option<Read>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("queue", &self.queue.name())
            .field("after", &self.after)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// The events of `queue` from `start`, read up to 100 at a time, each read blocking up
    /// to 5 s.
    pub fn new(queue: Arc<dyn Queue>, start: StartAt) -> EventStream {
        EventStream {
            queue,
            start: Some(start),
            after: EventId::start(),
            batch: 100,
            wait: Duration::from_secs(5),
            buffer: std::collections::VecDeque::new(),
            read: None,
        }
    }

    /// Most events per read (1 to [`crate::MAX_BATCH`]).
    pub fn batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// How long one read blocks waiting for new events.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// The id of the last event handed out (resume with [`StartAt::After`]).
    pub fn position(&self) -> &EventId {
        &self.after
    }

    fn next_read(&mut self) -> Read {
        let queue = Arc::clone(&self.queue);
        let start = self.start.clone();
        let after = self.after.clone();
        let (batch, wait) = (self.batch, self.wait);
        Box::pin(async move {
            let after = match start {
                None | Some(StartAt::Oldest) => after,
                Some(StartAt::Now) => queue.last_event_id().await?,
                Some(StartAt::After(id)) => id,
            };
            let events = queue.events(&after, batch, wait).await?;
            Ok((after, events))
        })
    }
}

impl Stream for EventStream {
    type Item = Result<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.after = event.id.clone();
                return Poll::Ready(Some(Ok(event)));
            }
            let mut read = match self.read.take() {
                Some(read) => read,
                None => self.next_read(),
            };
            match read.as_mut().poll(cx) {
                Poll::Pending => {
                    self.read = Some(read);
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Ok((after, events))) => {
                    // the start is resolved once a read got through
                    self.start = None;
                    self.after = after;
                    self.buffer.extend(events);
                }
            }
        }
    }
}
