//! The crate's error type.

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong with a rate limiter. A denial is not an error: it is a
/// [`Decision`](crate::Decision) with `allowed == false`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A limit is invalid (zero capacity, window under 1 ms, ...), found at `build()`.
    #[error("invalid rate limit: {0}")]
    InvalidLimit(String),

    /// The key is unusable: empty, too long, or contains `{` or `}`.
    #[error("invalid rate-limit key: {0}")]
    InvalidKey(String),

    /// An argument is out of range (zero cost, zero block, too many points, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The cost is larger than a limit's capacity: no amount of waiting lets it pass.
    #[error("a cost of {cost} can never pass the {limit} limit of capacity {capacity}")]
    CostTooLarge {
        /// The requested cost.
        cost: u64,
        /// The capacity it exceeds.
        capacity: u64,
        /// The limit's policy name.
        limit: String,
    },

    /// The decision did not come back within the limiter's deadline.
    #[error("the rate-limit decision took longer than its deadline of {0:?}")]
    Deadline(std::time::Duration),

    /// The store (Redis) failed.
    #[error(transparent)]
    Store(redkit_core::Error),
}

impl From<redkit_core::Error> for Error {
    fn from(e: redkit_core::Error) -> Self {
        match e {
            redkit_core::Error::InvalidKey(msg) => Error::InvalidKey(msg),
            redkit_core::Error::InvalidArgument(msg) => Error::InvalidArgument(msg),
            other => Error::Store(other),
        }
    }
}

impl Error {
    /// Whether the store failed or did not answer in time (as opposed to bad input):
    /// the errors a fail-open or insurance policy covers.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, Error::Store(_) | Error::Deadline(_))
    }
}
