//! The in-memory backend: the same topics, buffers and lag policies in one process.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::Stream;
use redkit_core::LagQueue;

use crate::{
    Error, Event, Options, PubSub, RawStream, Received, Result, Topic, check_options, check_topic,
};

/// A [`PubSub`] in process memory, for tests and single-process apps. Topics, glob
/// patterns, buffers and lag policies behave as on Redis; channels and sharded channels
/// are separate namespaces (as on a cluster). It passes the same conformance suite as
/// [`RedisPubSub`](crate::RedisPubSub). Clones share the subscribers.
#[derive(Clone, Default)]
pub struct MemoryPubSub {
    subs: Arc<Mutex<Vec<Sub>>>,
    next: Arc<AtomicU64>,
}

impl fmt::Debug for MemoryPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPubSub")
            .field("subscriptions", &self.lock().len())
            .finish()
    }
}

type Queue = LagQueue<Event<Vec<u8>>>;

struct Sub {
    id: u64,
    topic: Topic,
    queue: Arc<Queue>,
}

/// Redis's glob matching (`stringmatchlen`): `*`, `?`, `[...]` with `^` and ranges, `\`.
pub(crate) fn glob(pattern: &[u8], s: &[u8]) -> bool {
    match pattern.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&pattern[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&pattern[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else {
                return false;
            };
            let mut i = 1;
            let negate = pattern.get(1) == Some(&b'^');
            if negate {
                i += 1;
            }
            let mut matched = false;
            while i < pattern.len() && pattern[i] != b']' {
                if pattern[i] == b'\\' && i + 1 < pattern.len() {
                    matched |= pattern[i + 1] == c;
                    i += 2;
                } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']'
                {
                    let (lo, hi) = (
                        pattern[i].min(pattern[i + 2]),
                        pattern[i].max(pattern[i + 2]),
                    );
                    matched |= (lo..=hi).contains(&c);
                    i += 3;
                } else {
                    matched |= pattern[i] == c;
                    i += 1;
                }
            }
            let rest = if i < pattern.len() {
                &pattern[i + 1..]
            } else {
                &[][..]
            };
            matched != negate && glob(rest, &s[1..])
        }
        Some(b'\\') if pattern.len() > 1 => {
            s.first() == Some(&pattern[1]) && glob(&pattern[2..], &s[1..])
        }
        Some(&p) => s.first() == Some(&p) && glob(&pattern[1..], &s[1..]),
    }
}

impl MemoryPubSub {
    /// No subscribers yet.
    pub fn new() -> MemoryPubSub {
        MemoryPubSub::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Sub>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct MemoryStream {
    queue: Arc<Queue>,
    id: u64,
    subs: Arc<Mutex<Vec<Sub>>>,
}

impl Stream for MemoryStream {
    type Item = Event<Vec<u8>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.queue
            .poll_pop(cx)
            .map(|e| e.map(|e| e.unwrap_or_else(|missed| Event::Lagged { missed })))
    }
}

impl Drop for MemoryStream {
    fn drop(&mut self) {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| s.id != self.id);
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    async fn publish_raw(&self, topic: &Topic, payload: &[u8]) -> Result<u64> {
        check_topic(topic)?;
        if let Topic::Pattern(p) = topic {
            return Err(Error::InvalidChannel(format!(
                "`{p}` is a pattern: messages are published to channels"
            )));
        }
        let name = topic.name();
        let subs = self.lock();
        let mut n = 0;
        for s in subs.iter() {
            let pattern = match (&s.topic, topic) {
                (Topic::Channel(c), Topic::Channel(_)) | (Topic::Sharded(c), Topic::Sharded(_))
                    if c == name =>
                {
                    None
                }
                (Topic::Pattern(p), Topic::Channel(_)) if glob(p.as_bytes(), name.as_bytes()) => {
                    Some(p.clone())
                }
                _ => continue,
            };
            n += 1;
            s.queue.push(Event::Message(Received {
                channel: name.to_string(),
                pattern,
                payload: payload.to_vec(),
            }));
        }
        Ok(n)
    }

    async fn subscribe_raw(&self, topic: &Topic, options: Options) -> Result<RawStream> {
        check_topic(topic)?;
        check_options(&options)?;
        let capacity = options.buffer.unwrap_or(1024);
        let queue = Arc::new(Queue::new(capacity, options.lag, |_| true));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().push(Sub {
            id,
            topic: topic.clone(),
            queue: queue.clone(),
        });
        Ok(Box::pin(MemoryStream {
            queue,
            id,
            subs: self.subs.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_like_redis() {
        for (p, s, want) in [
            ("news.*", "news.sport", true),
            ("news.*", "news", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "axb", false),
            ("*", "", true),
            ("*.*", "a.b.c", true),
        ] {
            assert_eq!(glob(p.as_bytes(), s.as_bytes()), want, "{p} ~ {s}");
        }
    }
}
