//! The crate's error type.

use std::sync::Arc;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a loader may fail with: any error type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong with a cache. Cheap to clone: every caller waiting on one load gets
/// the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache's configuration is invalid (found when it is built).
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(String),

    /// A key, tag or argument is unusable: empty, too long, with braces or control
    /// characters, or a zero TTL.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The value is larger than the cache's `max_value_size`; nothing was written.
    #[error("the value is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The encoded value's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A value could not be encoded (typed API). Undecodable cached data is not an error:
    /// it counts as a miss and is reported in [`crate::Metrics::undecodable`].
    #[error("cache codec error: {0}")]
    Codec(String),

    /// The loader failed. Every caller that waited on the same load gets this error; it
    /// is not cached unless [`crate::LoadOptions::cache_errors`] asks for it.
    #[error("loader failed: {0}")]
    Load(Arc<dyn std::error::Error + Send + Sync>),

    /// A loader error cached by [`crate::LoadOptions::cache_errors`]: its message.
    #[error("loader failed recently (cached): {0}")]
    CachedLoadError(String),

    /// The writer failed (write-through): the cache was not updated and the keys were
    /// dropped from it.
    #[error("writer failed: {0}")]
    Write(Arc<dyn std::error::Error + Send + Sync>),

    /// `flush` gave up: write-behind records it waited for were still in the logs.
    #[error("write-behind flush timed out with {pending} writes still pending")]
    FlushTimeout {
        /// Records still waiting.
        pending: u64,
    },

    /// The store (Redis) failed.
    #[error(transparent)]
    Store(Arc<redkit_core::Error>),
}

impl From<redkit_core::Error> for Error {
    fn from(e: redkit_core::Error) -> Self {
        match e {
            redkit_core::Error::InvalidKey(msg) | redkit_core::Error::InvalidArgument(msg) => {
                Error::InvalidArgument(msg)
            }
            other => Error::Store(Arc::new(other)),
        }
    }
}
