#![doc = include_str!("../README.md")]

mod batch;
mod clock;
#[cfg(feature = "cluster")]
mod cluster;
mod codec;
mod config;
mod error;
mod handle;
mod keyspace;
mod packed;
mod script;
#[cfg(feature = "sentinel")]
mod sentinel;
mod subscribe;
#[cfg(feature = "tls")]
mod tls;
mod topology_url;

pub use batch::Coalescer;
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::{Codec, JsonCodec};
pub use config::{MAX_POOL_SIZE, RedisConfig, RedisConfigBuilder, Secret, Topology};
pub use error::{Error, Result};
pub use handle::{Connection, Dedicated, MIN_SERVER_VERSION, Redis, ServerInfo};
pub use keyspace::{CLUSTER_SLOTS, Key, Keyspace, MAX_KEY_LEN, key_slot, same_slot};
pub use packed::PackedInts;
pub use script::{Invocation, Pipeline, Script};
pub use subscribe::{
    Event, LagPolicy, LagQueue, Message, SubscribeOptions, Subscriber, Subscription,
};

/// The deadpool-redis version behind the dedicated connection pool.
pub use deadpool_redis;
/// The redis-rs version redkit is built on, re-exported so applications never mix two.
pub use redis;
