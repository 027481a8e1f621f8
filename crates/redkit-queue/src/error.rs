//! The crate's error type.

use std::sync::Arc;

use crate::JobId;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a queue.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue's or worker's configuration is invalid (found when it is built).
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),

    /// An argument is unusable: a bad id or unique key, a zero or negative duration, too
    /// many jobs in one call.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A payload is larger than the queue's `max_payload`; nothing was enqueued.
    #[error("the payload is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// The payload's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },

    /// A payload or result could not be encoded (typed API).
    #[error("queue codec error: {0}")]
    Codec(String),

    /// Stored job data is not a job (written by something else, or damaged).
    #[error("corrupt queue data: {0}")]
    Corrupt(String),

    /// The delivery's lease is gone: it ran out and the job was delivered again (or
    /// removed). This worker can no longer complete, fail or extend it.
    #[error("the lease of job {0} was lost")]
    LeaseLost(JobId),

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
