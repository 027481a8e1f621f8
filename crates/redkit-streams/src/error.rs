//! The crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stream, group or consumer name is unusable: empty, too long, or contains `{` or
    /// `}`.
    #[error("invalid name: {0}")]
    InvalidName(String),

    /// An argument or setting is out of range (a count of 0, a batch over the limit, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A payload could not be encoded.
    #[error("could not encode the payload: {0}")]
    Encode(String),

    /// The group does not exist (the stream was deleted or never had it).
    #[error("no group `{group}` on stream `{stream}`")]
    NoGroup {
        /// The stream.
        stream: String,
        /// The group.
        group: String,
    },

    /// The store (Redis) failed.
    #[error(transparent)]
    Store(redkit_core::Error),
}

impl From<redkit_core::Error> for Error {
    fn from(e: redkit_core::Error) -> Self {
        match e {
            redkit_core::Error::InvalidKey(msg) => Error::InvalidName(msg),
            redkit_core::Error::InvalidArgument(msg) => Error::InvalidArgument(msg),
            other => Error::Store(other),
        }
    }
}
