//! The crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a geo index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A longitude or latitude is NaN or outside what Redis can index: longitude in
    /// [-180, 180], latitude in [-85.05112878, 85.05112878].
    #[error("invalid coordinates: {0}")]
    InvalidCoordinates(String),

    /// A place id is empty or too long, or its metadata is too long.
    #[error("invalid place: {0}")]
    InvalidPlace(String),

    /// An index or prefix name is unusable: empty, too long, or contains `{` or `}`.
    #[error("invalid index name: {0}")]
    InvalidName(String),

    /// An argument is out of range (a radius or box side that is not positive and finite,
    /// a count of 0, too many places in one call, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A search centred on a place that is not in the index.
    #[error("no place `{0}` in the index")]
    UnknownPlace(String),

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
