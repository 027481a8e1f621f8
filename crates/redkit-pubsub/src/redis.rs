//! The Redis backend, on the redkit-core subscription connection of a handle.

use async_trait::async_trait;
use futures_util::StreamExt;
use redkit_core::{Redis, SubscribeOptions};

use crate::{
    Error, Event, Options, PubSub, RawStream, Received, Result, Topic, check_options, check_topic,
};

/// A [`PubSub`] on Redis.
///
/// Every subscription of one `Redis` handle shares that handle's single subscription
/// connection (RESP3): the server sends each message once per handle and redkit fans it
/// out in process. The connection resubscribes after a reconnect (sharded channels per
/// slot on a cluster) and subscriptions see [`Event::Disconnected`] /
/// [`Event::Resubscribed`] around the gap. Channel names get the backend's prefix.
#[derive(Debug, Clone)]
pub struct RedisPubSub {
    redis: Redis,
    prefix: String,
}

impl RedisPubSub {
    /// Pub/sub on `redis`, channel names as given.
    pub fn new(redis: &Redis) -> RedisPubSub {
        RedisPubSub {
            redis: redis.clone(),
            prefix: String::new(),
        }
    }

    /// Channel names become `<prefix>:<name>` (patterns too), so applications sharing a
    /// server do not hear each other. The prefix may not hold glob characters.
    pub fn with_prefix(redis: &Redis, prefix: &str) -> Result<RedisPubSub> {
        if prefix.is_empty() || prefix.contains(['*', '?', '[', ']', '\\']) {
            return Err(Error::InvalidChannel(format!(
                "the prefix `{prefix}` is empty or holds glob characters"
            )));
        }
        Ok(RedisPubSub {
            redis: redis.clone(),
            prefix: format!("{prefix}:"),
        })
    }

    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish_raw(&self, topic: &Topic, payload: &[u8]) -> Result<u64> {
        check_topic(topic)?;
        match topic {
            Topic::Channel(c) => Ok(self.redis.publish(&self.full(c), payload).await?),
            Topic::Sharded(c) => Ok(self.redis.spublish(&self.full(c), payload).await?),
            Topic::Pattern(p) => Err(Error::InvalidChannel(format!(
                "`{p}` is a pattern: messages are published to channels"
            ))),
        }
    }

    async fn subscribe_raw(&self, topic: &Topic, options: Options) -> Result<RawStream> {
        check_topic(topic)?;
        check_options(&options)?;
        let mut opts = SubscribeOptions::new().lag(options.lag);
        if let Some(b) = options.buffer {
            opts = opts.buffer(b);
        }
        let subscriber = self.redis.subscriber().await?;
        let name = self.full(topic.name());
        let sub = match topic {
            Topic::Channel(_) => subscriber.subscribe_with(&name, opts).await?,
            Topic::Pattern(_) => subscriber.psubscribe_with(&name, opts).await?,
            Topic::Sharded(_) => subscriber.ssubscribe_with(&name, opts).await?,
        };
        let prefix = self.prefix.clone();
        let strip = move |s: String| match s.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.to_string(),
            None => s,
        };
        Ok(Box::pin(sub.filter_map(move |e| {
            let out = match e {
                redkit_core::Event::Message(m) => Some(Event::Message(Received {
                    channel: strip(m.channel),
                    pattern: m.pattern.map(&strip),
                    payload: m.payload,
                })),
                redkit_core::Event::Disconnected => Some(Event::Disconnected),
                redkit_core::Event::Resubscribed => Some(Event::Resubscribed),
                redkit_core::Event::Lagged { missed } => Some(Event::Lagged { missed }),
                _ => None,
            };
            std::future::ready(out)
        })))
    }
}
