#![doc = include_str!("../README.md")]

#[cfg(feature = "conformance")]
pub mod conformance;
mod memory;
mod redis;

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use memory::MemoryPubSub;
pub use redis::RedisPubSub;
pub use redkit_core::LagPolicy;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with pub/sub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A channel or pattern name is empty or too long.
    #[error("invalid channel: {0}")]
    InvalidChannel(String),
    /// A payload could not be encoded.
    #[error("could not encode the payload: {0}")]
    Encode(String),
    /// An option is unusable (a buffer of 0 messages), found before anything is sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The store (Redis) failed.
    #[error(transparent)]
    Store(redkit_core::Error),
}

impl From<redkit_core::Error> for Error {
    fn from(e: redkit_core::Error) -> Self {
        match e {
            redkit_core::Error::InvalidArgument(msg) => Error::InvalidChannel(msg),
            other => Error::Store(other),
        }
    }
}

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topic {
    /// One channel.
    Channel(String),
    /// Every channel matching a glob pattern (`*`, `?`, `[...]`).
    Pattern(String),
    /// One sharded channel: on a cluster it lives on its slot's node (`SSUBSCRIBE`,
    /// `SPUBLISH`), so its traffic does not cross the whole cluster bus.
    Sharded(String),
}

impl Topic {
    pub(crate) fn name(&self) -> &str {
        match self {
            Topic::Channel(n) | Topic::Pattern(n) | Topic::Sharded(n) => n,
        }
    }
}

/// How a subscription buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Options {
    /// Messages buffered (default 1024).
    pub buffer: Option<usize>,
    /// What a full buffer does (default: drop newest and report).
    pub lag: LagPolicy,
}

impl Options {
    /// The defaults.
    pub fn new() -> Options {
        Options::default()
    }

    /// Messages buffered: 1 or more (subscribing with 0 is
    /// [`Error::InvalidArgument`]); `usize::MAX` is unbounded.
    pub fn buffer(mut self, n: usize) -> Options {
        self.buffer = Some(n);
        self
    }

    /// What a full buffer does.
    pub fn lag(mut self, lag: LagPolicy) -> Options {
        self.lag = lag;
        self
    }
}

/// A message received, with the payload as `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Received<T> {
    /// The channel it was published on (without the backend's prefix).
    pub channel: String,
    /// The pattern that matched, for pattern subscriptions.
    pub pattern: Option<String>,
    /// The payload.
    pub payload: T,
}

/// What a subscription yields. Pub/sub is at most once: `Disconnected` and `Lagged`
/// mean messages may have been lost (use redkit-streams for durable delivery).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<T> {
    /// A message.
    Message(Received<T>),
    /// A message whose payload did not decode as `T`: reported, not fatal.
    Undecodable {
        /// Its channel.
        channel: String,
        /// Why it did not decode.
        error: String,
    },
    /// The link dropped: messages published until `Resubscribed` may be lost.
    Disconnected,
    /// The link is back and the subscription is in place again.
    Resubscribed,
    /// The subscriber fell behind and `missed` messages were dropped.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// A subscription's raw events, as a stream.
pub type RawStream = Pin<Box<dyn Stream<Item = Event<Vec<u8>>> + Send>>;

/// Publish and subscribe, bytes level. Object safe; [`PubSubExt`] adds typed JSON
/// payloads.
#[async_trait]
pub trait PubSub: Send + Sync + fmt::Debug {
    /// Publishes a payload. Returns how many subscribers received it (on a cluster, those
    /// reached through the node that took it).
    async fn publish_raw(&self, topic: &Topic, payload: &[u8]) -> Result<u64>;

    /// Subscribes. The stream ends only with [`LagPolicy::Disconnect`]; dropping it
    /// unsubscribes.
    async fn subscribe_raw(&self, topic: &Topic, options: Options) -> Result<RawStream>;
}

/// Typed publishing and subscribing on any [`PubSub`].
#[async_trait]
pub trait PubSubExt: PubSub {
    /// Publishes `message` as JSON.
    async fn publish<T: Serialize + Sync>(&self, topic: &Topic, message: &T) -> Result<u64> {
        let json = serde_json::to_vec(message).map_err(|e| Error::Encode(e.to_string()))?;
        self.publish_raw(topic, &json).await
    }

    /// Subscribes with default options; messages decode as `T`.
    async fn subscribe<T: DeserializeOwned>(&self, topic: &Topic) -> Result<Subscription<T>> {
        self.subscribe_with(topic, Options::new()).await
    }

    /// Subscribes with options; messages decode as `T`.
    async fn subscribe_with<T: DeserializeOwned>(
        &self,
        topic: &Topic,
        options: Options,
    ) -> Result<Subscription<T>> {
        Ok(Subscription {
            inner: self.subscribe_raw(topic, options).await?,
            _t: PhantomData,
        })
    }
}

impl<P: PubSub + ?Sized> PubSubExt for P {}

/// A typed subscription: a [`Stream`] of [`Event`]s. Dropping it unsubscribes.
pub struct Subscription<T> {
    inner: RawStream,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next event (`None` only after [`LagPolicy::Disconnect`] ended it).
    pub async fn recv(&mut self) -> Option<Event<T>> {
        futures_util::StreamExt::next(self).await
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = Event<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        let this = self.get_mut();
        this.inner.as_mut().poll_next(cx).map(|e| {
            e.map(|e| match e {
                Event::Message(m) => match serde_json::from_slice::<T>(&m.payload) {
                    Ok(payload) => Event::Message(Received {
                        channel: m.channel,
                        pattern: m.pattern,
                        payload,
                    }),
                    Err(err) => Event::Undecodable {
                        channel: m.channel,
                        error: err.to_string(),
                    },
                },
                Event::Undecodable { channel, error } => Event::Undecodable { channel, error },
                Event::Disconnected => Event::Disconnected,
                Event::Resubscribed => Event::Resubscribed,
                Event::Lagged { missed } => Event::Lagged { missed },
            })
        })
    }
}

/// Checks a subscription's options before anything is sent.
pub(crate) fn check_options(options: &Options) -> Result<()> {
    if options.buffer == Some(0) {
        return Err(Error::InvalidArgument(
            "a subscription buffer of 0 messages could hold nothing".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_topic(topic: &Topic) -> Result<()> {
    let name = topic.name();
    if name.is_empty() || name.len() > 1024 {
        return Err(Error::InvalidChannel(format!(
            "a channel or pattern must be 1 to 1024 bytes, not {}",
            name.len()
        )));
    }
    Ok(())
}
