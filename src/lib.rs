#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use redkit_core as core;
#[doc(inline)]
pub use redkit_core::{Error, Keyspace, Redis, RedisConfig, Result};

#[cfg(feature = "cache")]
#[doc(inline)]
pub use redkit_cache as cache;
#[cfg(feature = "geo")]
#[doc(inline)]
pub use redkit_geo as geo;
#[cfg(feature = "leaderboard")]
#[doc(inline)]
pub use redkit_leaderboard as leaderboard;
#[cfg(feature = "lock")]
#[doc(inline)]
pub use redkit_lock as lock;
#[cfg(feature = "pubsub")]
#[doc(inline)]
pub use redkit_pubsub as pubsub;
#[cfg(feature = "queue")]
#[doc(inline)]
pub use redkit_queue as queue;
#[cfg(feature = "ratelimit")]
#[doc(inline)]
pub use redkit_ratelimit as ratelimit;
#[cfg(feature = "session")]
#[doc(inline)]
pub use redkit_session as session;
#[cfg(feature = "streams")]
#[doc(inline)]
pub use redkit_streams as streams;
